"""Sealed envelopes: the sync agent's binary wire format (version 1).

An envelope carries one payload (a patient case from a clinic, or a dermatologist's review
from the hub) from a *sender* party to a *recipient* party. It is pure bytes in, bytes out.

Security properties
-------------------
* **Confidentiality**: the payload is encrypted with HPKE (RFC 9180, base mode) to the
  recipient's hybrid post-quantum KEM key, suite ``MLKEM768-X25519/HKDF-SHA256/AES-256-GCM``.
* **Authenticity and integrity**: the sender signs every byte before the signature
  (header and ciphertext) with its Ed25519 key. HPKE base mode alone does not authenticate
  the sender: anyone who knows the recipient's public key can encrypt to it.
* **Header binding**: the header is the HPKE ``info``, so the ciphertext only decrypts under
  the exact header it was sealed with. An enrolled party that strips another party's
  signature, rewrites the sender id to its own and re-signs still cannot get the recipient
  to accept the payload as its own: decryption fails.
* **Not provided here** (caller's job): replay and duplicate detection (keep the
  ``envelope_id`` / :func:`envelope_digest` of what was accepted), freshness
  (``created_at`` is the sender's claim, authenticated but not checked against a clock),
  and forward secrecy (anyone holding the recipient's KEM private key can open every
  envelope ever sent to it: protect and rotate key files accordingly).

Byte layout (all integers unsigned big-endian)
----------------------------------------------
=============  ===========  ====================================================================
Offset         Size         Field
=============  ===========  ====================================================================
0              4            magic ``b"SKSE"``
4              1            format version, ``0x01``
5              1            kind: ``0x01`` = case, ``0x02`` = review
6              1            suite id: ``0x01`` = MLKEM768-X25519/HKDF-SHA256/AES-256-GCM
7              1            ``N``: length of the envelope id, 1..128
8              16           sender party id (the 32-hex-character id, as 16 raw bytes)
24             16           recipient party id (same encoding)
40             8            ``created_at``: IEEE 754 binary64 (seconds since the Unix epoch,
                            finite)
48             ``N``        envelope id, ASCII, matching ``[A-Za-z0-9][A-Za-z0-9._-]*``
48+N           8            ``L``: ciphertext length, at least 1,136
56+N           ``L``        HPKE ciphertext: encapsulated key (1,120 bytes) || AES-256-GCM
                            ciphertext of the payload with its 16-byte tag
56+N+L         64           Ed25519 signature, by the sender, over bytes ``[0, 56+N+L)``
=============  ===========  ====================================================================

The **header** is bytes ``[0, 56+N)``; it is passed verbatim as the HPKE ``info``. The
envelope is exactly ``56 + N + L + 64`` bytes: shorter or longer is malformed. HPKE
overhead is 1,136 bytes, so an envelope is ``len(payload) + N + 1,256`` bytes.

Opening checks, in order (the first failure raises):

1. total size ``<= max_bytes``, before parsing anything -> :class:`EnvelopeTooLarge`;
2. magic -> :class:`MalformedEnvelope`; version and suite -> :class:`UnsupportedVersion`;
   kind, id length, ``created_at``, envelope id, ciphertext length, exact total length
   -> :class:`MalformedEnvelope`;
3. recipient id is ours -> :class:`WrongRecipient`;
4. sender is known to ``sender_lookup`` -> :class:`UnknownSender`;
5. signature verifies with the sender's key, **before** any decryption -> :class:`BadSignature`;
6. HPKE decryption with the header as ``info`` -> :class:`DecryptionFailed`.

:func:`peek_header` runs steps 1-2 only: its result is for routing and must not be trusted.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.hpke import KEM

from sync_agent.errors import (
    BadSignature,
    DecryptionFailed,
    EnvelopeTooLarge,
    MalformedEnvelope,
    UnknownSender,
    UnsupportedVersion,
    WrongRecipient,
)
from sync_agent.keys import SUITE_NAME, PartyKeys, PublicIdentity, hpke_suite

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "HPKE_OVERHEAD",
    "MAGIC",
    "MAX_ENVELOPE_ID_LEN",
    "SENDER_PREFIX_LEN",
    "SIGNATURE_LEN",
    "SUITE_ID",
    "EnvelopeHeader",
    "Kind",
    "OpenedEnvelope",
    "envelope_digest",
    "open_envelope",
    "peek_header",
    "peek_sender",
    "seal",
]

Kind = Literal["case", "review"]

MAGIC: Final = b"SKSE"
FORMAT_VERSION: Final = 1
SUITE_ID: Final = 1
SIGNATURE_LEN: Final = 64
MAX_ENVELOPE_ID_LEN: Final = 128
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
HPKE_OVERHEAD: Final = KEM.MLKEM768_X25519.enc_length() + 16
"""Bytes HPKE adds to a payload: encapsulated key (1,120) + AES-GCM tag (16)."""

_FIXED = struct.Struct(">4sBBBB16s16sd")  # offsets 0..48
_CT_LEN = struct.Struct(">Q")
_KIND_CODES: Final[dict[str, int]] = {"case": 0x01, "review": 0x02}
_KIND_NAMES: Final[dict[int, Kind]] = {0x01: "case", 0x02: "review"}
_ENVELOPE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class EnvelopeHeader:
    """The parsed, **unverified** header of an envelope (see :func:`peek_header`)."""

    version: int
    kind: Kind
    suite: str
    sender_id: str
    recipient_id: str
    envelope_id: str
    created_at: float
    ciphertext_length: int


@dataclass(frozen=True)
class OpenedEnvelope:
    """A verified, decrypted envelope.

    ``digest`` is :func:`envelope_digest` of the envelope bytes, for acknowledgements.
    """

    kind: Kind
    sender_id: str
    recipient_id: str
    envelope_id: str
    created_at: float
    payload: bytes
    digest: str


@dataclass(frozen=True)
class _Parsed:
    header: EnvelopeHeader
    header_end: int  # == start of ciphertext
    ciphertext_end: int  # == start of signature


def _check_envelope_id(envelope_id: str) -> bytes:
    if not isinstance(envelope_id, str) or not _ENVELOPE_ID.fullmatch(envelope_id):
        raise ValueError("envelope_id must match [A-Za-z0-9][A-Za-z0-9._-]*")
    raw = envelope_id.encode("ascii")
    if len(raw) > MAX_ENVELOPE_ID_LEN:
        raise ValueError(f"envelope_id must be at most {MAX_ENVELOPE_ID_LEN} characters")
    return raw


def seal(
    payload: bytes,
    *,
    kind: Kind,
    sender: PartyKeys,
    recipient: PublicIdentity,
    envelope_id: str,
    created_at: float,
) -> bytes:
    """Encrypt ``payload`` to ``recipient`` and sign it as ``sender``; return the envelope.

    ``envelope_id`` must match ``[A-Za-z0-9][A-Za-z0-9._-]*`` and be at most 128
    characters (a UUID fits); ``created_at`` must be finite. Invalid arguments raise
    :class:`ValueError` (a programming error, not an envelope error).
    """
    kind_code = _KIND_CODES.get(kind)
    if kind_code is None:
        raise ValueError("kind must be 'case' or 'review'")
    eid = _check_envelope_id(envelope_id)
    created = float(created_at)
    if not math.isfinite(created):
        raise ValueError("created_at must be a finite number")
    if recipient.suite != SUITE_NAME:
        raise ValueError(f"recipient suite {recipient.suite!r} is not {SUITE_NAME!r}")
    ciphertext_length = len(payload) + HPKE_OVERHEAD
    header = (
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            kind_code,
            SUITE_ID,
            len(eid),
            bytes.fromhex(sender.party_id),
            bytes.fromhex(recipient.party_id),
            created,
        )
        + eid
        + _CT_LEN.pack(ciphertext_length)
    )
    ciphertext = hpke_suite().encrypt(payload, recipient.kem_key, header)
    if len(ciphertext) != ciphertext_length:  # pragma: no cover - library contract
        raise RuntimeError("HPKE ciphertext length differs from the documented overhead")
    body = header + ciphertext
    del ciphertext
    return body + sender.signing_key.sign(body)


def _parse(data: bytes, max_bytes: int) -> _Parsed:
    """Size cap, then structure. Never looks at the ciphertext or signature contents."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    size = len(data)
    if size > max_bytes:
        raise EnvelopeTooLarge(f"envelope is {size} bytes, over the {max_bytes}-byte cap")
    if size < len(MAGIC) + 1:
        raise MalformedEnvelope("envelope is truncated (no header)")
    if data[: len(MAGIC)] != MAGIC:
        raise MalformedEnvelope("not an envelope (bad magic)")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"envelope format version {version} is not supported (expected {FORMAT_VERSION})"
        )
    if size < _FIXED.size:
        raise MalformedEnvelope("envelope is truncated (in the fixed header)")
    _magic, _version, kind_code, suite_id, id_len, sender, recipient, created_at = (
        _FIXED.unpack_from(data, 0)
    )
    if suite_id != SUITE_ID:
        raise UnsupportedVersion(f"envelope cipher suite id {suite_id} is not supported")
    kind = _KIND_NAMES.get(kind_code)
    if kind is None:
        raise MalformedEnvelope(f"unknown envelope kind code {kind_code}")
    if not 1 <= id_len <= MAX_ENVELOPE_ID_LEN:
        raise MalformedEnvelope(f"envelope id length {id_len} is out of range")
    if not math.isfinite(created_at):
        raise MalformedEnvelope("created_at is not a finite number")
    header_end = _FIXED.size + id_len + _CT_LEN.size
    if size < header_end:
        raise MalformedEnvelope("envelope is truncated (in the header)")
    eid_raw = bytes(data[_FIXED.size : _FIXED.size + id_len])
    if not _ENVELOPE_ID.fullmatch(eid_raw.decode("latin-1")):
        raise MalformedEnvelope("envelope id contains characters outside [A-Za-z0-9._-]")
    (ciphertext_length,) = _CT_LEN.unpack_from(data, _FIXED.size + id_len)
    if ciphertext_length < HPKE_OVERHEAD:
        raise MalformedEnvelope("ciphertext is shorter than the HPKE overhead")
    expected = header_end + ciphertext_length + SIGNATURE_LEN
    if size < expected:
        raise MalformedEnvelope(f"envelope is truncated ({size} of {expected} bytes)")
    if size > expected:
        raise MalformedEnvelope(f"envelope has {size - expected} trailing bytes")
    header = EnvelopeHeader(
        version=version,
        kind=kind,
        suite=SUITE_NAME,
        sender_id=sender.hex(),
        recipient_id=recipient.hex(),
        envelope_id=eid_raw.decode("ascii"),
        created_at=created_at,
        ciphertext_length=ciphertext_length,
    )
    return _Parsed(header=header, header_end=header_end, ciphertext_end=expected - SIGNATURE_LEN)


def peek_header(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> EnvelopeHeader:
    """Parse the header for routing (e.g. by sender id) **without verifying anything**.

    Applies the size cap and full structural checks (the same exceptions as
    :func:`open_envelope` steps 1-2), but the result is attacker-controlled until
    :func:`open_envelope` succeeds: never act on it beyond choosing where to look.
    """
    return _parse(data, max_bytes).header


#: Bytes of an envelope that name its sender (magic, version, kind, suite, id length,
#: sender): what a receiver reads before it accepts the rest of an upload.
SENDER_PREFIX_LEN: Final = 24


def peek_sender(prefix: bytes) -> str:
    """The claimed sender party id of an envelope from its first :data:`SENDER_PREFIX_LEN`
    bytes (magic and version checked; unverified, for refusing unknown senders early)."""
    if len(prefix) < SENDER_PREFIX_LEN:
        raise MalformedEnvelope("envelope is truncated (in the fixed header)")
    if prefix[: len(MAGIC)] != MAGIC:
        raise MalformedEnvelope("not an envelope (bad magic)")
    if prefix[len(MAGIC)] != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"envelope format version {prefix[len(MAGIC)]} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    return prefix[8:SENDER_PREFIX_LEN].hex()


def envelope_digest(data: bytes) -> str:
    """SHA-256 (lowercase hex) of the whole envelope: the name the hub acknowledges."""
    return hashlib.sha256(data).hexdigest()


def open_envelope(
    data: bytes,
    *,
    recipient: PartyKeys,
    sender_lookup: Callable[[str], PublicIdentity | None],
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OpenedEnvelope:
    """Verify and decrypt an envelope addressed to ``recipient``.

    ``sender_lookup`` maps a sender party id (32 lowercase hex characters) to that party's
    enrolled :class:`~sync_agent.keys.PublicIdentity`, or ``None`` if the party
    is not enrolled. Checks run in the order documented in the module docstring; every
    failure raises an :class:`~sync_agent.errors.EnvelopeError` subclass.
    """
    parsed = _parse(data, max_bytes)
    header = parsed.header
    if header.recipient_id != recipient.party_id:
        raise WrongRecipient(
            f"envelope {header.envelope_id} is addressed to {header.recipient_id}, "
            f"not to {recipient.party_id}"
        )
    identity = sender_lookup(header.sender_id)
    if identity is None:
        raise UnknownSender(f"envelope {header.envelope_id}: unknown sender {header.sender_id}")
    if identity.party_id != header.sender_id:
        raise UnknownSender(
            f"envelope {header.envelope_id}: sender lookup returned another party's identity"
        )
    view = memoryview(data)
    try:
        identity.signing_key.verify(view[parsed.ciphertext_end :], view[: parsed.ciphertext_end])
    except InvalidSignature:
        raise BadSignature(
            f"envelope {header.envelope_id}: signature does not verify for sender "
            f"{header.sender_id}"
        ) from None
    try:
        payload = hpke_suite().decrypt(
            view[parsed.header_end : parsed.ciphertext_end],
            recipient.kem_private_key,
            view[: parsed.header_end],
        )
    except InvalidTag:
        raise DecryptionFailed(
            f"envelope {header.envelope_id}: ciphertext does not decrypt with our key"
        ) from None
    return OpenedEnvelope(
        kind=header.kind,
        sender_id=header.sender_id,
        recipient_id=header.recipient_id,
        envelope_id=header.envelope_id,
        created_at=header.created_at,
        payload=payload,
        digest=envelope_digest(data),
    )
