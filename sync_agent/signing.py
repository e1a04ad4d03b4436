"""Signed clinic requests: part of the wire protocol between the clinic's sync agent and the
review hub. Pure functions with no I/O.

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
:class:`~sync_agent.keys.PublicIdentity` (the hub uses it). Timestamps within
``HubSettings.clock_skew_seconds`` (30 days by default) of the hub's clock are accepted:
see :class:`~review_hub.settings.HubSettings` for why that is safe enough.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidSignature

from sync_agent.keys import PartyKeys, PublicIdentity

__all__ = [
    "CLINIC_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "RequestAuthError",
    "parse_clinic_id",
    "request_message",
    "sign_request",
    "verify_request",
]

CLINIC_ID_HEADER = "X-Clinic-Id"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_PARTY_ID = re.compile(r"[0-9a-f]{32}")
_MAX_SIGNATURE_CHARS = 128


class RequestAuthError(Exception):
    """A signed clinic request was refused; ``code`` and ``status`` go into the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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
