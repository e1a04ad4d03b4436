"""Exceptions of the update machinery, split by who is at fault.

* :class:`BundleInputError` (an ``InputError``): the maintainer's or operator's input is
  unusable (a card without an intended-use line, a version that is not X.Y.Z, a path that
  is not a bundle). CLI exit status 2.
* :class:`UpdateRefusedError`: what arrived is not trustworthy and was refused: metadata
  that fails TUF verification (signatures, versions, expiry, hashes), a download longer or
  different than signed, a bundle file that does not match its manifest. Each refusal
  leaves the active bundle untouched.
* Everything else is an operational problem: the source cannot be reached, the clinic is
  not provisioned with a trusted root, keys are missing, the new bundle failed its smoke
  test, or needs a newer server.
"""

from __future__ import annotations

from skinspector.core.errors import InputError, SkinspectorError

__all__ = [
    "BundleInputError",
    "BundleIntegrityError",
    "DownloadIntegrityError",
    "ExpiredMetadataError",
    "IncompatibleBundleError",
    "KeyStoreError",
    "MetadataMismatchError",
    "NotProvisionedError",
    "RollbackError",
    "SignatureError",
    "SlotError",
    "SmokeTestError",
    "UntrustedMetadataError",
    "UpdateError",
    "UpdateRefusedError",
    "UpdateSourceError",
]


class UpdateError(SkinspectorError):
    """Base class of the update machinery's errors."""


class BundleInputError(InputError):
    """Bad input to a bundle command (card, version, paths)."""


class UpdateRefusedError(UpdateError):
    """Something that arrived failed verification; nothing was installed."""


class UntrustedMetadataError(UpdateRefusedError):
    """TUF metadata failed verification."""


class SignatureError(UntrustedMetadataError):
    """Metadata is not signed by a threshold of the keys the trusted root names."""


class RollbackError(UntrustedMetadataError):
    """Metadata is older than metadata this clinic already trusts (rollback)."""


class ExpiredMetadataError(UntrustedMetadataError):
    """Metadata has expired (freeze attack, stale copy, or a wrong clock)."""


class MetadataMismatchError(UntrustedMetadataError):
    """Metadata does not match what the metadata above it signed (mix-and-match)."""


class DownloadIntegrityError(UpdateRefusedError):
    """A downloaded target is longer than signed or its hash differs (tampered, endless)."""


class BundleIntegrityError(UpdateRefusedError):
    """A bundle file does not match the manifest (size, SHA-256, unlisted or unsafe)."""


class UpdateSourceError(UpdateError):
    """The update source cannot be read (hub unreachable, directory missing)."""


class NotProvisionedError(UpdateError):
    """The clinic has no trusted root metadata yet (``skinspector update --init-root``)."""


class KeyStoreError(UpdateError):
    """Signing keys are missing, too few, or do not match the repository."""


class IncompatibleBundleError(UpdateError):
    """The bundle needs a newer server than this one."""


class SmokeTestError(UpdateError):
    """The new bundle was installed but failed its smoke test; it was not activated."""


class SlotError(UpdateError):
    """The slot layout does not allow the operation (e.g. no previous slot to go back to)."""
