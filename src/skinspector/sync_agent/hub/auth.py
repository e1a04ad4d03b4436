"""Authentication primitives of the review hub, pure functions with no I/O.

Clinic requests
---------------
A clinic proves who it is on ``GET /api/v1/reviews`` with three headers:

* ``X-Clinic-Id``: its party id;
* ``X-Timestamp``: whole seconds since the Unix epoch, as decimal digits;
* ``X-Signature``: standard base64 of the Ed25519 signature, by the clinic's signing key,
  over the UTF-8 bytes of ``f"{METHOD}\\n{path_qs}\\n{timestamp}"``, where ``METHOD`` is
  upper case, ``path_qs`` is the request target exactly as sent on the wire (path and query
  string, percent-encoded as sent, e.g. ``/api/v1/reviews?after=12``) and ``timestamp`` is
  the ``X-Timestamp`` value.

:func:`sign_request` builds the headers (the clinic's sync agent uses it);
:func:`verify_request` checks them against an enrolled
:class:`~skinspector.sync_agent.keys.PublicIdentity`. Timestamps within
``HubSettings.clock_skew_seconds`` (30 days by default) of the hub's clock are accepted:
see :class:`~skinspector.sync_agent.hub.settings.HubSettings` for why that is safe enough.

Reviewer passwords
------------------
:func:`hash_password` uses ``hashlib.scrypt`` (memory-hard; n=2**14, r=8, p=1, 32-byte key,
16-byte random salt) and records the parameters with the hash, PHC-style::

    $scrypt$n=16384,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>

:func:`verify_password` recomputes with the recorded parameters and compares in constant
time, so parameters can be raised later without invalidating stored hashes
(:func:`needs_rehash` says when to re-hash after a successful login).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from skinspector.core.errors import InputError
from skinspector.sync_agent.keys import PartyKeys, PublicIdentity

__all__ = [
    "CLINIC_ID_HEADER",
    "DEFAULT_SCRYPT",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "RequestAuthError",
    "ScryptParams",
    "WeakPassword",
    "check_password_policy",
    "dummy_hash",
    "hash_password",
    "needs_rehash",
    "parse_clinic_id",
    "request_message",
    "sign_request",
    "verify_password",
    "verify_request",
]

CLINIC_ID_HEADER = "X-Clinic-Id"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"

#: Shortest reviewer password accepted (characters).
MIN_PASSWORD_LENGTH = 12
#: Longest password hashed; longer input is refused before any work is done.
MAX_PASSWORD_LENGTH = 1024

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_PARTY_ID = re.compile(r"[0-9a-f]{32}")
_MAX_SIGNATURE_CHARS = 128
_SCRYPT_PREFIX = "$scrypt$"
_SCRYPT_MAXMEM = 256 * 1024 * 1024


class RequestAuthError(Exception):
    """A signed clinic request was refused; ``code`` and ``status`` go into the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class WeakPassword(InputError):
    """The password breaks the policy (too short or too long)."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost parameters (memory ~ 128 * r * n bytes)."""

    n: int = 2**14
    r: int = 8
    p: int = 1
    key_length: int = 32
    salt_length: int = 16

    def encode(self) -> str:
        return f"n={self.n},r={self.r},p={self.p}"


#: Parameters used for new hashes.
DEFAULT_SCRYPT = ScryptParams()


# --------------------------------------------------------------------------- clinic requests


def request_message(method: str, path_qs: str, timestamp: str) -> bytes:
    """The exact bytes a clinic signs for one request."""
    return f"{method.upper()}\n{path_qs}\n{timestamp}".encode()


def sign_request(keys: PartyKeys, method: str, path_qs: str, timestamp: float) -> dict[str, str]:
    """Headers that authenticate one request as the clinic holding ``keys``.

    ``path_qs`` must be the request target the client will send (path and query string,
    already percent-encoded); ``timestamp`` is seconds since the epoch (fractions dropped).
    """
    stamp = str(int(timestamp))
    signature = keys.signing_key.sign(request_message(method, path_qs, stamp))
    return {
        CLINIC_ID_HEADER: keys.party_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
    }


def parse_clinic_id(value: str | None) -> str:
    """The ``X-Clinic-Id`` header value, validated (401 ``unauthorized`` otherwise)."""
    if value is None or not _PARTY_ID.fullmatch(value):
        raise RequestAuthError(
            401, "unauthorized", "sign the request: X-Clinic-Id, X-Timestamp, X-Signature"
        )
    return value


def verify_request(
    identity: PublicIdentity,
    *,
    method: str,
    path_qs: str,
    timestamp: str | None,
    signature: str | None,
    now: float,
    max_skew: float,
) -> None:
    """Check a signed request against the clinic's enrolled identity.

    Raises :class:`RequestAuthError`: 401 ``unauthorized`` for missing or malformed
    headers, 401 ``stale_request`` for a timestamp outside ``now +- max_skew``, 401
    ``bad_signature`` when the signature does not verify.
    """
    if timestamp is None or signature is None:
        raise RequestAuthError(401, "unauthorized", "X-Timestamp and X-Signature are required")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise RequestAuthError(401, "unauthorized", "X-Timestamp must be whole epoch seconds")
    if abs(int(timestamp) - now) > max_skew:
        raise RequestAuthError(
            401, "stale_request", "X-Timestamp is too far from the hub's clock: check the clock"
        )
    if len(signature) > _MAX_SIGNATURE_CHARS:
        raise RequestAuthError(401, "bad_signature", "the request signature does not verify")
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise RequestAuthError(
            401, "bad_signature", "the request signature does not verify"
        ) from None
    try:
        identity.signing_key.verify(raw, request_message(method, path_qs, timestamp))
    except InvalidSignature:
        raise RequestAuthError(
            401, "bad_signature", "the request signature does not verify"
        ) from None


# --------------------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def check_password_policy(password: str) -> None:
    """Raise :class:`WeakPassword` unless ``MIN <= len(password) <= MAX``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def _scrypt(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        dklen=params.key_length,
        maxmem=_SCRYPT_MAXMEM,
    )


def hash_password(password: str, params: ScryptParams = DEFAULT_SCRYPT) -> str:
    """A salted scrypt hash of ``password`` with its parameters (policy checked first)."""
    check_password_policy(password)
    salt = secrets.token_bytes(params.salt_length)
    key = _scrypt(password, salt, params)
    return f"{_SCRYPT_PREFIX}{params.encode()}${_b64(salt)}${_b64(key)}"


def _parse_hash(stored: str) -> tuple[ScryptParams, bytes, bytes] | None:
    if not stored.startswith(_SCRYPT_PREFIX):
        return None
    parts = stored[len(_SCRYPT_PREFIX) :].split("$")
    if len(parts) != 3:
        return None
    encoded, salt_text, key_text = parts
    try:
        fields = dict(item.split("=", 1) for item in encoded.split(","))
        n, r, p = int(fields["n"]), int(fields["r"]), int(fields["p"])
        salt, key = _unb64(salt_text), _unb64(key_text)
    except (ValueError, KeyError, binascii.Error):
        return None
    sane = 2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
    if not sane or not 8 <= len(salt) <= 64 or not 16 <= len(key) <= 64:
        return None
    return ScryptParams(n=n, r=r, p=p, key_length=len(key), salt_length=len(salt)), salt, key


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare of the keys).

    An unparseable ``stored`` value or an over-long password never matches.
    """
    parsed = _parse_hash(stored)
    if parsed is None or len(password) > MAX_PASSWORD_LENGTH:
        return False
    params, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, params), expected)


def needs_rehash(stored: str, params: ScryptParams = DEFAULT_SCRYPT) -> bool:
    """True when ``stored`` was made with weaker parameters than ``params``."""
    parsed = _parse_hash(stored)
    if parsed is None:
        return True
    old = parsed[0]
    return (
        old.n < params.n
        or old.r < params.r
        or old.p < params.p
        or old.key_length < params.key_length
    )


def dummy_hash() -> str:
    """A hash of an unguessable password: verified against when the username is unknown,
    so a login for a missing user costs the same time as one for a real user."""
    return hash_password(secrets.token_urlsafe(24))
