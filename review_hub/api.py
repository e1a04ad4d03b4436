"""The clinic-facing JSON API of the hub.

* ``POST /api/v1/envelopes``: a sealed case (``application/octet-stream``) -> its ack;
* ``GET /api/v1/reviews?after=<cursor>``: the calling clinic's reviews, sealed for it
  (signed request, see :mod:`sync_agent.signing`);
* ``GET /api/v1/identity``: the hub's public identity; ``GET /healthz``.

Every error is ``{"error": {"message", "type", "param", "code"}}`` with the status listed in
the README of the hub (and in :func:`envelope_error`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from review_hub.payloads import (
    CasePayload,
    InvalidCasePayload,
    parse_case_payload,
)
from review_hub.state import HUB_KEYS, SETTINGS, STORE, UPLOADS
from review_hub.store import ClinicRecord, EnvelopeIdReused, IngestResult
from review_hub.upload import spool_body, too_large
from skinspector.core.http_api import ApiError
from sync_agent.envelope import (
    SENDER_PREFIX_LEN,
    OpenedEnvelope,
    envelope_digest,
    open_envelope,
    peek_header,
    peek_sender,
)
from sync_agent.errors import (
    BadSignature,
    DecryptionFailed,
    EnvelopeError,
    EnvelopeTooLarge,
    MalformedEnvelope,
    UnknownSender,
    UnsupportedVersion,
    WrongRecipient,
)
from sync_agent.keys import PartyKeys, PublicIdentity
from sync_agent.signing import (
    CLINIC_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestAuthError,
    parse_clinic_id,
    verify_request,
)

__all__ = ["ApiError", "envelope_error", "routes"]

log = logging.getLogger("skinspector.hub")
routes = web.RouteTableDef()

_MAX_CURSOR = 2**62
_HOUR = 3600.0
_DAY = 86_400.0


def envelope_error(exc: EnvelopeError) -> ApiError:
    """Map a refused envelope to its answer (nothing from it is stored)."""
    if isinstance(exc, EnvelopeTooLarge):
        return ApiError(413, "envelope_too_large", str(exc))
    if isinstance(exc, UnsupportedVersion):
        return ApiError(400, "unsupported_version", str(exc))
    if isinstance(exc, MalformedEnvelope):
        return ApiError(400, "malformed_envelope", str(exc))
    if isinstance(exc, WrongRecipient):
        return ApiError(400, "wrong_recipient", "the envelope is not addressed to this hub")
    if isinstance(exc, UnknownSender):
        return ApiError(403, "unknown_clinic", "the sender is not an enrolled clinic")
    if isinstance(exc, BadSignature):
        return ApiError(400, "bad_signature", "the envelope's signature does not verify")
    if isinstance(exc, DecryptionFailed):
        return ApiError(400, "decryption_failed", "the envelope does not decrypt")
    return ApiError(400, "invalid_envelope", "the envelope was refused")


@dataclass(frozen=True, slots=True)
class _Verified:
    opened: OpenedEnvelope
    case: CasePayload


def _verify(data: bytes, keys: PartyKeys, identity: PublicIdentity, cap: int) -> _Verified:
    """Open and parse a case envelope (worker thread: decryption and JSON are CPU work)."""

    def lookup(party_id: str) -> PublicIdentity | None:
        return identity if party_id == identity.party_id else None

    try:
        opened = open_envelope(data, recipient=keys, sender_lookup=lookup, max_bytes=cap)
    except EnvelopeError as exc:
        raise envelope_error(exc) from None
    if opened.kind != "case":
        raise ApiError(400, "wrong_kind", "the hub accepts envelopes of kind 'case' only")
    try:
        case = parse_case_payload(opened.payload)
    except InvalidCasePayload as exc:
        raise ApiError(422, "invalid_case", str(exc)) from None
    return _Verified(opened, case)


def _ack(result: IngestResult) -> web.Response:
    return web.json_response(
        {"ack": result.ack, "envelope_id": result.envelope_id, "case_id": result.case_id}
    )


async def _sender(request: web.Request, party_id: str) -> ClinicRecord:
    clinic = await asyncio.to_thread(request.app[STORE].get_clinic, party_id)
    if clinic is None:
        raise ApiError(403, "unknown_clinic", "this clinic is not enrolled at this hub")
    if not clinic.active:
        raise ApiError(403, "unknown_clinic", "this clinic's enrolment has been revoked")
    return clinic


async def _upload_sender(request: web.Request, prefix: bytes) -> ClinicRecord:
    """The sending clinic, from headers and the envelope's first bytes, before the body."""
    try:
        claimed = peek_sender(prefix)
    except EnvelopeError as exc:
        raise envelope_error(exc) from None
    if CLINIC_ID_HEADER in request.headers:
        clinic = await _authenticated_clinic(request)
        if clinic.party_id != claimed:
            raise ApiError(403, "sender_mismatch", "the envelope names another sender")
        return clinic
    if request.app[SETTINGS].require_signed_uploads:
        raise ApiError(401, "unsigned_request", "sign the upload (X-Clinic-Id, X-Signature)")
    return await _sender(request, claimed)


@routes.post("/api/v1/envelopes")
async def post_envelope(request: web.Request) -> web.Response:
    """Accept one sealed case; answer its ack (the envelope's SHA-256), idempotently.

    The sender is checked before the body is read, and the body is streamed to disk under
    the cap (see :mod:`review_hub.upload`)."""
    settings = request.app[SETTINGS]
    if request.content_type != "application/octet-stream":
        raise ApiError(
            415, "unsupported_media_type", "send the envelope as application/octet-stream"
        )
    cap = settings.max_envelope_bytes
    if request.content_length is not None and request.content_length > cap:
        raise too_large(cap)
    with request.app[UPLOADS].slot():
        try:
            prefix = await request.content.readexactly(SENDER_PREFIX_LEN)
        except asyncio.IncompleteReadError as exc:
            prefix = exc.partial
        clinic = await _upload_sender(request, prefix)
        await _check_quota(request, clinic)
        path = await spool_body(request, prefix, cap, settings.incoming_dir)
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        await asyncio.to_thread(
            request.app[STORE].record_upload,
            clinic.party_id,
            size,
            forget_before=time.time() - _DAY,
        )
        try:
            data = await asyncio.to_thread(path.read_bytes)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        return await _ingest(request, clinic, data)


async def _check_quota(request: web.Request, clinic: ClinicRecord) -> None:
    """429 when the clinic is over its hourly envelope or daily byte quota (declared
    ``Content-Length`` included), before its body is read."""
    settings, now = request.app[SETTINGS], time.time()
    cases, uploaded = await asyncio.to_thread(
        request.app[STORE].clinic_usage,
        clinic.party_id,
        hour_from=now - _HOUR,
        day_from=now - _DAY,
    )
    if cases >= settings.max_cases_per_clinic_per_hour:
        raise ApiError(
            429,
            "quota_exceeded",
            "this clinic has sent its hourly number of new cases; retry later",
            headers={"Retry-After": str(int(_HOUR / 4))},
        )
    if uploaded + (request.content_length or 0) > settings.max_bytes_per_clinic_per_day:
        raise ApiError(
            429,
            "quota_exceeded",
            "this clinic has uploaded its daily number of bytes; retry later",
            headers={"Retry-After": str(int(_HOUR))},
        )


async def _ingest(request: web.Request, clinic: ClinicRecord, data: bytes) -> web.Response:
    store, cap = request.app[STORE], request.app[SETTINGS].max_envelope_bytes
    try:
        header = peek_header(data, max_bytes=cap)
    except EnvelopeError as exc:
        raise envelope_error(exc) from None
    if header.sender_id != clinic.party_id:  # pragma: no cover - prefix checked above
        raise ApiError(403, "sender_mismatch", "the envelope names another sender")
    digest = await asyncio.to_thread(envelope_digest, data)
    earlier = await asyncio.to_thread(store.receipt, digest)
    if earlier is not None:  # the very same bytes were verified and stored before
        return _ack(earlier)
    verified = await asyncio.to_thread(_verify, data, request.app[HUB_KEYS], clinic.identity(), cap)
    try:
        result = await asyncio.to_thread(
            store.ingest_case,
            clinic_id=clinic.party_id,
            digest=verified.opened.digest,
            envelope_id=verified.opened.envelope_id,
            envelope_created_at=verified.opened.created_at,
            case=verified.case,
        )
    except EnvelopeIdReused as exc:
        raise ApiError(409, "envelope_id_reused", str(exc)) from None
    if result.created:
        log.info("new case from clinic %s", clinic.party_id)
    return _ack(result)


def _cursor(request: web.Request) -> int:
    raw = request.query.get("after", "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > _MAX_CURSOR:
        raise ApiError(400, "bad_cursor", "after must be a non-negative integer cursor")
    return int(raw)


async def _authenticated_clinic(request: web.Request) -> ClinicRecord:
    settings = request.app[SETTINGS]
    try:
        party_id = parse_clinic_id(request.headers.get(CLINIC_ID_HEADER))
        clinic = await _sender(request, party_id)
        verify_request(
            clinic.identity(),
            method=request.method,
            path_qs=request.raw_path,
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
            now=time.time(),
            max_skew=settings.clock_skew_seconds,
        )
    except RequestAuthError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return clinic


@routes.get("/api/v1/reviews")
async def get_reviews(request: web.Request) -> web.Response:
    """The calling clinic's reviews after ``after``, each sealed for that clinic."""
    clinic = await _authenticated_clinic(request)
    after = _cursor(request)
    found = await asyncio.to_thread(
        request.app[STORE].reviews_for,
        clinic.party_id,
        after,
        request.app[SETTINGS].reviews_page_size,
    )
    reviews: list[dict[str, Any]] = [
        {
            "cursor": review.cursor,
            "case_id": review.case_id,
            "envelope_b64": base64.b64encode(review.envelope).decode("ascii"),
        }
        for review in found
    ]
    next_cursor = found[-1].cursor if found else after
    return web.json_response({"reviews": reviews, "next_cursor": next_cursor})


@routes.get("/api/v1/identity")
async def get_identity(request: web.Request) -> web.Response:
    """The hub's public identity (what ``enrol-clinic`` prints)."""
    return web.Response(
        text=request.app[HUB_KEYS].public().to_json(), content_type="application/json"
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness (the clinic's agent probes it before a round)."""
    return web.json_response({"status": "ok", "party_id": request.app[HUB_KEYS].party_id})
