"""Party keys for the sync agent: private key files and public identities.

Every party (a clinic box, the review hub) holds one :class:`PartyKeys`:

* an **Ed25519** signing key, which authenticates the envelopes the party sends and from
  which its ``party_id`` is derived (first 32 hex characters of SHA-256 of the raw 32-byte
  public key);
* a hybrid post-quantum **HPKE KEM** key, ML-KEM-768 + X25519 (suite
  ``MLKEM768-X25519/HKDF-SHA256/AES-256-GCM``), to which envelopes addressed to the party
  are encrypted.

``cryptography`` exposes no serialisation for its hybrid HPKE key objects, so the two KEM
components are kept and stored separately and the hybrid key is rebuilt from them: the
ML-KEM-768 private key as its 64-byte FIPS 203 seed, the X25519 private key as its raw 32
bytes. The KEM *public* key is published as the 1,216-byte concatenation
``ML-KEM-768 public key (1,184 bytes) || X25519 public key (32 bytes)``.

:class:`PublicIdentity` is what a clinic gives the hub at enrolment and what the hub gives
back. Its ``party_id`` commits to the signing key only, so the identity also carries
``kem_binding``: an Ed25519 signature, by the party's signing key, over the suite name and
the KEM public key. Whoever checks the ``party_id`` out of band (read aloud, QR code) is
thereby assured of the KEM key too: a KEM key swapped in transit is refused.

Private key file (JSON, mode 0600, written atomically)::

    {"format": "skinspector-sync-private-keys", "version": 1, "suite": "...",
     "party_id": "<32 hex>", "signing_private": "<b64 32 bytes>",
     "kem_mlkem768_seed": "<b64 64 bytes>", "kem_x25519_private": "<b64 32 bytes>"}

Public identity (JSON)::

    {"format": "skinspector-sync-identity", "version": 1, "suite": "...",
     "party_id": "<32 hex>", "signing_public": "<b64 32 bytes>",
     "kem_public": "<b64 1216 bytes>", "kem_binding": "<b64 64 bytes>"}
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)

from skinspector.core.storage import fsync_dir
from sync_agent.errors import IdentityError, KeyFileError

__all__ = [
    "KEM_PUBLIC_LEN",
    "PARTY_ID_HEX_LEN",
    "SIGNING_PUBLIC_LEN",
    "SUITE_NAME",
    "PartyKeys",
    "PublicIdentity",
    "generate_keys",
    "hpke_suite",
    "party_id_for",
]

SUITE_NAME = "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"
"""The only HPKE suite this version speaks (RFC 9180 base mode, hybrid PQ KEM)."""

SIGNING_PUBLIC_LEN = 32
"""Raw Ed25519 public key length."""

PARTY_ID_HEX_LEN = 32
"""Length of a party id: 32 lowercase hex characters (128 bits of SHA-256)."""

_MLKEM768_PUBLIC_LEN = 1184
_MLKEM768_SEED_LEN = 64
_X25519_LEN = 32
_ED25519_PRIVATE_LEN = 32
_SIGNATURE_LEN = 64

KEM_PUBLIC_LEN = _MLKEM768_PUBLIC_LEN + _X25519_LEN
"""Published KEM public key length: ML-KEM-768 public key || X25519 public key."""

_KEY_FILE_FORMAT = "skinspector-sync-private-keys"
_IDENTITY_FORMAT = "skinspector-sync-identity"
_FILE_VERSION = 1
_MAX_JSON_CHARS = 64 * 1024
# Domain separation for the identity's KEM binding signature. It must never be a prefix an
# envelope can start with (envelopes start with b"SKSE").
_KEM_BINDING_CONTEXT = b"skinspector-sync/identity-kem-binding/v1\x00"

_SUITE = Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


def hpke_suite() -> Suite:
    """The HPKE suite object matching :data:`SUITE_NAME`."""
    return _SUITE


def party_id_for(signing_public: bytes) -> str:
    """Derive a party id from a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(signing_public).hexdigest()[:PARTY_ID_HEX_LEN]


def _kem_binding_message(suite: str, kem_public: bytes) -> bytes:
    return _KEM_BINDING_CONTEXT + suite.encode("ascii") + b"\x00" + kem_public


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, field: str, length: int, exc: type[Exception]) -> bytes:
    """Decode a strict base64 field of an exact length; raise ``exc`` without the value."""
    if not isinstance(value, str):
        raise exc(f"field {field!r} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise exc(f"field {field!r} is not valid base64") from None
    if len(raw) != length:
        raise exc(f"field {field!r} must decode to {length} bytes, got {len(raw)}")
    return raw


def _load_json_object(
    text: str, expected_format: str, fields: frozenset[str], exc: type[Exception]
) -> dict[str, Any]:
    """Parse ``text`` as one JSON object with exactly ``fields`` and the expected header."""
    if len(text) > _MAX_JSON_CHARS:
        raise exc("document is too large")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise exc("document is not valid JSON") from None
    if not isinstance(obj, dict):
        raise exc("document must be a JSON object")
    if obj.get("format") != expected_format:
        raise exc(f"document format is not {expected_format!r}")
    if obj.get("version") != _FILE_VERSION:
        raise exc(f"unsupported document version (expected {_FILE_VERSION})")
    keys = set(obj)
    if keys != fields:
        missing = sorted(fields - keys)
        extra = sorted(keys - fields)
        raise exc(f"document fields do not match (missing {missing}, unexpected {extra})")
    if obj.get("suite") != SUITE_NAME:
        raise exc(f"unsupported suite (this version speaks only {SUITE_NAME!r})")
    return obj


def _x25519_public_is_usable(key: x25519.X25519PublicKey) -> bool:
    """False for small-order points, whose shared secret is all zero (RFC 7748 section 6.1)."""
    try:
        x25519.X25519PrivateKey.generate().exchange(key)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PublicIdentity:
    """A party's public keys: enough to encrypt to it and to verify its signatures.

    Construction validates everything (lengths, suite, ``party_id`` recomputed from
    ``signing_public``, KEM key well-formed, ``kem_binding`` signature) and raises
    :class:`~sync_agent.errors.IdentityError` on any mismatch, so an instance
    that exists is consistent.
    """

    party_id: str
    signing_public: bytes
    kem_public: bytes
    suite: str
    kem_binding: bytes

    def __post_init__(self) -> None:
        for name in ("signing_public", "kem_public", "kem_binding"):
            if not isinstance(getattr(self, name), bytes):
                raise IdentityError(f"{name} must be bytes")
        if self.suite != SUITE_NAME:
            raise IdentityError(f"unsupported suite (this version speaks only {SUITE_NAME!r})")
        if len(self.signing_public) != SIGNING_PUBLIC_LEN:
            raise IdentityError(f"signing_public must be {SIGNING_PUBLIC_LEN} bytes")
        if len(self.kem_public) != KEM_PUBLIC_LEN:
            raise IdentityError(f"kem_public must be {KEM_PUBLIC_LEN} bytes")
        if len(self.kem_binding) != _SIGNATURE_LEN:
            raise IdentityError(f"kem_binding must be {_SIGNATURE_LEN} bytes")
        if not isinstance(self.party_id, str) or self.party_id != party_id_for(self.signing_public):
            raise IdentityError("party_id does not match the signing public key")
        # The cached accessors parse the raw bytes (ValueError on a malformed key); parsing
        # them here both validates and warms them.
        try:
            signing = self.signing_key
            _ = self.kem_key
            x_pub = x25519.X25519PublicKey.from_public_bytes(self.kem_public[_MLKEM768_PUBLIC_LEN:])
        except ValueError:
            raise IdentityError("signing_public or kem_public is not a valid key") from None
        if not _x25519_public_is_usable(x_pub):
            raise IdentityError("kem_public has a small-order X25519 component")
        try:
            signing.verify(self.kem_binding, _kem_binding_message(self.suite, self.kem_public))
        except InvalidSignature:
            raise IdentityError(
                "kem_binding does not verify: the KEM key is not bound to this party"
            ) from None

    @cached_property
    def signing_key(self) -> ed25519.Ed25519PublicKey:
        """The Ed25519 public key object, to verify the party's envelopes."""
        return ed25519.Ed25519PublicKey.from_public_bytes(self.signing_public)

    @cached_property
    def kem_key(self) -> MLKEM768X25519PublicKey:
        """The hybrid HPKE public key object, to encrypt envelopes to the party."""
        return MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.kem_public[:_MLKEM768_PUBLIC_LEN]),
            x25519.X25519PublicKey.from_public_bytes(self.kem_public[_MLKEM768_PUBLIC_LEN:]),
        )

    def to_json(self) -> str:
        """Serialise as the enrolment JSON document (stable key order)."""
        return json.dumps(
            {
                "format": _IDENTITY_FORMAT,
                "version": _FILE_VERSION,
                "suite": self.suite,
                "party_id": self.party_id,
                "signing_public": _b64(self.signing_public),
                "kem_public": _b64(self.kem_public),
                "kem_binding": _b64(self.kem_binding),
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PublicIdentity:
        """Parse and fully validate an enrolment JSON document.

        Raises :class:`~sync_agent.errors.IdentityError` on anything unexpected:
        wrong format (including a *private* key file handed over by mistake), unknown or
        missing fields, bad base64, wrong lengths, a ``party_id`` that is not derived from
        ``signing_public``, or a KEM key not bound to the signing key.
        """
        obj = _load_json_object(
            text,
            _IDENTITY_FORMAT,
            frozenset(
                {
                    "format",
                    "version",
                    "suite",
                    "party_id",
                    "signing_public",
                    "kem_public",
                    "kem_binding",
                }
            ),
            IdentityError,
        )
        party_id = obj["party_id"]
        if not isinstance(party_id, str):
            raise IdentityError("field 'party_id' must be a string")
        return cls(
            party_id=party_id,
            signing_public=_unb64(
                obj["signing_public"], "signing_public", SIGNING_PUBLIC_LEN, IdentityError
            ),
            kem_public=_unb64(obj["kem_public"], "kem_public", KEM_PUBLIC_LEN, IdentityError),
            suite=obj["suite"],
            kem_binding=_unb64(obj["kem_binding"], "kem_binding", _SIGNATURE_LEN, IdentityError),
        )


@dataclass(frozen=True, eq=False, repr=False)
class PartyKeys:
    """A party's private keys: Ed25519 signing key + ML-KEM-768/X25519 KEM key components.

    The hybrid HPKE private key is :attr:`kem_private_key`, rebuilt from the two components
    (``cryptography`` cannot serialise the hybrid object itself). ``repr`` shows the party id
    only, never key material.
    """

    signing_key: ed25519.Ed25519PrivateKey
    kem_mlkem: mlkem.MLKEM768PrivateKey
    kem_x25519: x25519.X25519PrivateKey

    def __repr__(self) -> str:
        return f"PartyKeys(party_id={self.party_id!r})"

    @cached_property
    def party_id(self) -> str:
        """This party's id (derived from the Ed25519 public key)."""
        return party_id_for(self.signing_key.public_key().public_bytes_raw())

    @cached_property
    def kem_private_key(self) -> MLKEM768X25519PrivateKey:
        """The hybrid HPKE private key, to open envelopes addressed to this party."""
        return MLKEM768X25519PrivateKey(self.kem_mlkem, self.kem_x25519)

    @cached_property
    def _public(self) -> PublicIdentity:
        signing_public = self.signing_key.public_key().public_bytes_raw()
        kem_public = (
            self.kem_mlkem.public_key().public_bytes_raw()
            + self.kem_x25519.public_key().public_bytes_raw()
        )
        # Ed25519 signatures are deterministic, so public() is stable across calls and runs.
        binding = self.signing_key.sign(_kem_binding_message(SUITE_NAME, kem_public))
        return PublicIdentity(
            party_id=party_id_for(signing_public),
            signing_public=signing_public,
            kem_public=kem_public,
            suite=SUITE_NAME,
            kem_binding=binding,
        )

    def public(self) -> PublicIdentity:
        """The matching public identity (the enrolment document)."""
        return self._public

    def _to_json(self) -> str:
        return json.dumps(
            {
                "format": _KEY_FILE_FORMAT,
                "version": _FILE_VERSION,
                "suite": SUITE_NAME,
                "party_id": self.party_id,
                "signing_private": _b64(self.signing_key.private_bytes_raw()),
                "kem_mlkem768_seed": _b64(self.kem_mlkem.private_bytes_raw()),
                "kem_x25519_private": _b64(self.kem_x25519.private_bytes_raw()),
            },
            indent=2,
            sort_keys=True,
        )

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the private key file atomically with mode 0600.

        The JSON goes to a temporary file in the same folder (created 0600), is fsynced,
        then ``os.replace``-d onto ``path``, and the folder is fsynced. An existing file is
        refused unless ``overwrite`` is true: replacing a key file by mistake would lose the
        ability to open envelopes already sent to this party. (The existence check and the
        rename are not one atomic step; key provisioning is a single-operator action.)

        Raises :class:`~sync_agent.errors.KeyFileError` on any failure; the
        folder must already exist.
        """
        target = Path(path)
        folder = target.parent
        if not overwrite and target.exists():
            raise KeyFileError(f"key file already exists (pass overwrite=True): {target}")
        if not folder.is_dir():
            raise KeyFileError(f"key file folder does not exist: {folder}")
        data = self._to_json().encode("ascii")
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
            tmp_name = None
            fsync_dir(folder)
        except OSError as exc:
            raise KeyFileError(f"cannot write key file {target}: {exc.strerror}") from exc
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PartyKeys:
        """Read a private key file written by :meth:`save`.

        Refuses (with :class:`~sync_agent.errors.KeyFileError`) a missing or
        unreadable file, anything but a regular file, a file readable or writable by group
        or others (on POSIX), oversized or corrupt JSON, wrong format/version/suite, bad
        base64 or lengths, and a stored ``party_id`` that does not match the keys.
        """
        target = Path(path)
        try:
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise KeyFileError(f"key file not found: {target}") from None
        except OSError as exc:
            raise KeyFileError(f"cannot open key file {target}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file is not a regular file: {target}")
            if os.name == "posix" and info.st_mode & 0o077:
                mode = stat.S_IMODE(info.st_mode)
                raise KeyFileError(
                    f"key file {target} has mode {mode:04o}: it must not be accessible "
                    "by group or others (chmod 600)"
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read(_MAX_JSON_CHARS + 1)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {target}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"key file is not UTF-8 text: {target}") from None
        try:
            return cls._from_json(text)
        except KeyFileError as exc:
            raise KeyFileError(f"corrupt key file {target}: {exc}") from None

    @classmethod
    def _from_json(cls, text: str) -> PartyKeys:
        obj = _load_json_object(
            text,
            _KEY_FILE_FORMAT,
            frozenset(
                {
                    "format",
                    "version",
                    "suite",
                    "party_id",
                    "signing_private",
                    "kem_mlkem768_seed",
                    "kem_x25519_private",
                }
            ),
            KeyFileError,
        )
        signing_raw = _unb64(
            obj["signing_private"], "signing_private", _ED25519_PRIVATE_LEN, KeyFileError
        )
        seed = _unb64(
            obj["kem_mlkem768_seed"], "kem_mlkem768_seed", _MLKEM768_SEED_LEN, KeyFileError
        )
        x_raw = _unb64(obj["kem_x25519_private"], "kem_x25519_private", _X25519_LEN, KeyFileError)
        try:
            keys = cls(
                signing_key=ed25519.Ed25519PrivateKey.from_private_bytes(signing_raw),
                kem_mlkem=mlkem.MLKEM768PrivateKey.from_seed_bytes(seed),
                kem_x25519=x25519.X25519PrivateKey.from_private_bytes(x_raw),
            )
        except ValueError:
            raise KeyFileError("stored key bytes are not valid keys") from None
        if obj["party_id"] != keys.party_id:
            raise KeyFileError("stored party_id does not match the signing key")
        return keys


def generate_keys() -> PartyKeys:
    """Generate a fresh party: Ed25519 signing key + ML-KEM-768/X25519 KEM key."""
    return PartyKeys(
        signing_key=ed25519.Ed25519PrivateKey.generate(),
        kem_mlkem=mlkem.MLKEM768PrivateKey.generate(),
        kem_x25519=x25519.X25519PrivateKey.generate(),
    )
