"""Case intake and read-back: ``/api/v1/cases``."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from edge_server.auth import current_device
from edge_server.http_errors import ApiError
from edge_server.keys import (
    ADMISSION,
    EVENTS,
    METRICS,
    OUTBOX,
    SETTINGS,
    STORE,
    WORK_QUEUE,
)
from edge_server.store import CaseRecord, CaseStatus, NewPhoto
from skinspector.core.case_schema import ClinicalContext
from skinspector.core.imaging import DecodePool
from skinspector.core.settings import ImageSettings

__all__ = ["routes"]

routes = web.RouteTableDef()

_METADATA_LIMIT = 64 * 1024
#: Stored copies keep review-grade detail (about 3 MP) but no metadata.
_STORED = ImageSettings(min_pixels=28 * 28, max_pixels=2048 * 1536)


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "part_too_large", f"{what} is larger than {limit} bytes")
    return bytes(data)


async def _clean_photo(decoder: DecodePool, data: bytes, settings: ImageSettings) -> NewPhoto:
    limits = _STORED.model_copy(
        update={
            "max_input_bytes": settings.max_input_bytes,
            "max_input_pixels": settings.max_input_pixels,
            "max_aspect_ratio": settings.max_aspect_ratio,
        }
    )
    prepared = await decoder.prepare(data, limits)
    return NewPhoto(
        prepared.jpeg, hashlib.sha256(prepared.jpeg).hexdigest(), prepared.width, prepared.height
    )


async def _parse_upload(request: web.Request) -> tuple[ClinicalContext, list[bytes]]:
    settings = request.app[SETTINGS]
    if request.content_type != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send multipart/form-data with a 'metadata' part and 1-3 'photo' parts",
        )
    if (
        request.content_length is not None
        and request.content_length > settings.server.max_upload_bytes
    ):
        raise ApiError(
            413,
            "request_too_large",
            f"the request is larger than {settings.server.max_upload_bytes} bytes",
        )
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise ApiError(400, "malformed_multipart", "the multipart body cannot be read") from exc
    metadata: bytes | None = None
    photos: list[bytes] = []
    total = 0
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "malformed_multipart", "nested multipart is not accepted")
            if part.name == "metadata":
                if metadata is not None:
                    raise ApiError(400, "duplicate_metadata", "send one 'metadata' part")
                metadata = await _read_part(part, _METADATA_LIMIT, "metadata")
            elif part.name == "photo":
                if len(photos) == settings.server.max_photos:
                    raise ApiError(
                        400, "too_many_photos", f"send at most {settings.server.max_photos} photos"
                    )
                photo = await _read_part(part, settings.image.max_input_bytes, "a photo")
                photos.append(photo)
                total += len(photo)
                if total > settings.server.max_upload_bytes:
                    raise ApiError(413, "request_too_large", "the photos are too large together")
            else:
                raise ApiError(
                    400, "unexpected_part", "only 'metadata' and 'photo' parts are accepted"
                )
    except (ValueError, asyncio.IncompleteReadError, HttpProcessingError) as exc:
        # HttpProcessingError: a part header line too long, too many part headers
        raise ApiError(400, "malformed_multipart", "the multipart body is malformed") from exc
    if metadata is None:
        raise ApiError(400, "missing_metadata", "a 'metadata' part (JSON) is required")
    if not photos:
        raise ApiError(400, "missing_photo", "at least one 'photo' part is required")
    try:
        raw = json.loads(metadata)
    except (ValueError, RecursionError) as exc:  # bad JSON, deep nesting, 5000-digit ints
        raise ApiError(400, "malformed_metadata", "the 'metadata' part is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise ApiError(400, "malformed_metadata", "the 'metadata' part must be a JSON object")
    context = ClinicalContext.model_validate(raw)  # ValidationError -> 422 by the middleware
    return context, photos


@routes.post("/api/v1/cases")
async def create_case(request: web.Request) -> web.Response:
    """201 only after the case and its photos are durably stored."""
    app = request.app
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 128 and key.isprintable()):
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1-128 characters")
    device = current_device(request)
    if key is not None:  # a retry of a request whose answer was lost: same case, stored once
        earlier = await asyncio.to_thread(app[STORE].case_for_key, device.id, key)
        if earlier is not None:
            return _created(earlier, status=200)
    admission = app[ADMISSION]
    if not admission.try_acquire():
        app[METRICS].rejected.inc()
        retry = str(app[SETTINGS].server.retry_after_seconds)
        raise ApiError(
            503,
            "busy",
            "the analysis queue is full; try again shortly",
            headers={"Retry-After": retry},
        )
    try:
        context, photos = await _parse_upload(request)
        image_settings = app[SETTINGS].image
        decoder = app[STORE].decoder  # its own threads: the default pool stays free
        cleaned = list(
            await asyncio.gather(
                *(_clean_photo(decoder, photo, image_settings) for photo in photos)
            )
        )
        case = await asyncio.to_thread(app[STORE].create_case, context, cleaned, device.id, key)
    except BaseException:
        admission.release()
        raise
    await asyncio.to_thread(app[OUTBOX].enqueue, case.id)
    await app[WORK_QUEUE].put(case.id)
    return _created(case, status=201)


def _created(case: CaseRecord, status: int) -> web.Response:
    return web.json_response(
        {
            "id": case.id,
            "status": case.status.value,
            "links": {
                "self": f"/api/v1/cases/{case.id}",
                "events": f"/api/v1/cases/{case.id}/events",
            },
        },
        status=status,
    )


def _get_case(request: web.Request) -> CaseRecord:
    case_id = request.match_info["case_id"]
    if len(case_id) != 32 or not all(c in "0123456789abcdef" for c in case_id):
        raise ApiError(404, "not_found", "no such case")
    case = request.app[STORE].get(case_id)
    if case is None or not _visible(request, case):
        raise ApiError(404, "not_found", "no such case")  # another phone's: not even a 403
    return case


def _own_cases_only(request: web.Request) -> bool:
    return request.app[SETTINGS].server.case_visibility == "device"


def _visible(request: web.Request, case: CaseRecord) -> bool:
    """Whether the calling phone may see ``case`` (``server.case_visibility``)."""
    return not _own_cases_only(request) or case.device_id == current_device(request).id


@routes.get("/api/v1/cases")
async def list_cases(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "20"))
        before = request.query.get("before")
        before_seq = int(before) if before is not None else None
    except ValueError as exc:
        raise ApiError(400, "bad_query", "limit and before must be integers") from exc
    if not 1 <= limit <= 100:
        raise ApiError(400, "bad_query", "limit must be between 1 and 100")
    device = current_device(request).id if _own_cases_only(request) else None
    cases = await asyncio.to_thread(request.app[STORE].list_cases, limit, before_seq, device)
    body: dict[str, Any] = {"cases": [await _public(request, c) for c in cases]}
    if len(cases) == limit:
        body["next"] = f"/api/v1/cases?limit={limit}&before={cases[-1].seq}"
    return web.json_response(body)


async def _public(request: web.Request, case: CaseRecord) -> dict[str, Any]:
    """The case as the API shows it, with its sync state (queued / sent / reviewed)."""
    body = case.public()
    entry = await asyncio.to_thread(request.app[OUTBOX].get, case.id)
    body["sync"] = (
        None
        if entry is None
        else {
            "state": entry.state.value,
            "sent_at": entry.sent_at,
            "last_error": entry.last_error,
            "next_attempt_at": entry.next_attempt_at if entry.state.value == "queued" else None,
        }
    )
    return body


@routes.get("/api/v1/cases/{case_id}")
async def get_case(request: web.Request) -> web.Response:
    return web.json_response(await _public(request, _get_case(request)))


@routes.get("/api/v1/cases/{case_id}/photos/{index}")
async def get_photo(request: web.Request) -> web.FileResponse:
    case = _get_case(request)
    if case.device_id != current_device(request).id:
        raise ApiError(403, "forbidden", "photos are available to the device that sent them")
    try:
        index = int(request.match_info["index"])
    except ValueError as exc:
        raise ApiError(404, "not_found", "no such photo") from exc
    path = request.app[STORE].photo_path(case, index)
    if path is None:
        raise ApiError(404, "not_found", "no such photo")
    return web.FileResponse(
        path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, no-store"}
    )


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


@routes.get("/api/v1/cases/{case_id}/events")
async def case_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``status`` on every change, ``token``/``phase`` while the model
    writes; a ``: keep-alive`` comment when idle. Ends after a final status."""
    case = _get_case(request)
    hub = request.app[EVENTS]
    queue = hub.subscribe(case.id)  # subscribe before reading, so no change is missed
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    keepalive = request.app[SETTINGS].server.sse_keepalive_seconds
    try:
        current = request.app[STORE].get(case.id) or case
        await response.write(_sse({"type": "status", "status": current.status.value}))
        if current.status.finished:
            return response
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=keepalive)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(_sse(event))
            if event["type"] == "status" and CaseStatus(event["status"]).finished:
                return response
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    finally:
        hub.unsubscribe(case.id, queue)
