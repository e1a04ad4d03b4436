"""Reviewer passwords for the review hub, pure functions with no I/O.

:func:`hash_password` uses ``hashlib.scrypt`` (memory-hard; n=2**14, r=8, p=5, 32-byte key,
16-byte random salt) and records the parameters with the hash, PHC-style::

    $scrypt$n=16384,r=8,p=5$<salt, base64 without padding>$<key, base64 without padding>

n=2**14, r=8, p=5 is one of OWASP's equivalent minimum scrypt configurations (Password
Storage Cheat Sheet, 2025: N=2^17/p=1 ... N=2^14/p=5 ... N=2^13/p=10 cost the same work).
Of these it needs the least memory per attempt (16 MiB instead of 128 MiB), which matters
on an internet-facing hub where an attacker chooses how many logins run at once.
Hashes made with the older p=1 still verify and are re-hashed at the next login.

:func:`verify_password` recomputes with the recorded parameters and compares in constant
time, so parameters can be raised later without invalidating stored hashes
(:func:`needs_rehash` says when to re-hash after a successful login).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from skinspector.core.errors import InputError

__all__ = [
    "DEFAULT_SCRYPT",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "ScryptParams",
    "WeakPassword",
    "check_password_policy",
    "dummy_hash",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

#: Shortest reviewer password accepted (characters).
MIN_PASSWORD_LENGTH = 12
#: Longest password hashed; longer input is refused before any work is done.
MAX_PASSWORD_LENGTH = 1024
_SCRYPT_PREFIX = "$scrypt$"
_SCRYPT_MAXMEM = 256 * 1024 * 1024


class WeakPassword(InputError):
    """The password breaks the policy (too short or too long)."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost parameters (memory ~ 128 * r * n bytes)."""

    n: int = 2**14
    r: int = 8
    p: int = 5
    key_length: int = 32
    salt_length: int = 16

    def encode(self) -> str:
        return f"n={self.n},r={self.r},p={self.p}"


#: Parameters used for new hashes.
DEFAULT_SCRYPT = ScryptParams()


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
