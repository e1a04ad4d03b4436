"""Exception hierarchy of the sync agent's cryptographic layer.

Every class derives from :class:`SyncError`, itself a
:class:`~skinspector.core.errors.SkinspectorError`. Messages name envelope ids, party ids and
file paths only: they never contain payload bytes or key material, so they are safe to log.

``EnvelopeError`` subclasses describe an envelope that must be rejected; the order in which
:func:`sync_agent.envelope.open_envelope` checks (and so which class a damaged
envelope raises) is documented there.
"""

from __future__ import annotations

from skinspector.core.errors import SkinspectorError

__all__ = [
    "BadSignature",
    "DecryptionFailed",
    "EnvelopeError",
    "EnvelopeTooLarge",
    "IdentityError",
    "KeyFileError",
    "MalformedEnvelope",
    "SyncError",
    "UnknownSender",
    "UnsupportedVersion",
    "WrongRecipient",
]


class SyncError(SkinspectorError):
    """Base class of every error raised by the sync agent."""


class EnvelopeError(SyncError):
    """An envelope was rejected; nothing from it may be used."""


class EnvelopeTooLarge(EnvelopeError):
    """The envelope exceeds the size cap (checked before any parsing)."""


class MalformedEnvelope(EnvelopeError):
    """The bytes are not a well-formed envelope (bad magic, truncated, trailing bytes...)."""


class UnsupportedVersion(EnvelopeError):
    """The envelope's format version or cipher suite is not one this code understands."""


class WrongRecipient(EnvelopeError):
    """The envelope is addressed to another party."""


class UnknownSender(EnvelopeError):
    """The claimed sender is not an enrolled party."""


class BadSignature(EnvelopeError):
    """The sender's signature does not verify: forged or altered envelope."""


class DecryptionFailed(EnvelopeError):
    """The signature verified but the ciphertext does not decrypt with our key."""


class KeyFileError(SyncError):
    """A private key file is missing, unreadable, corrupt or too widely readable."""


class IdentityError(SyncError):
    """A public identity is invalid (bad lengths, party id mismatch, bad key binding)."""
