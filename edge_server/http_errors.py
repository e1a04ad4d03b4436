"""JSON errors at the HTTP edge: project exceptions -> status codes, in one place."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from edge_server import keys
from edge_server.pairing import ExpiredPairingCode, InvalidPairingCode, PairingRateLimited
from skinspector.core.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    InputError,
    SkinspectorError,
    UnsupportedImageError,
)
from skinspector.core.http_api import (
    ApiError,
    guard_body,
    http_exception_json,
    last_resort_response,
)

__all__ = [
    "ApiError",
    "access_log_middleware",
    "error_middleware",
    "json_body",
]

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger(__name__)
access_log = logging.getLogger("skinspector.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def json_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body validated as ``model`` (415/400/422 otherwise)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        # RecursionError: deeply nested arrays; ValueError: a 5000-digit integer
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from exc
    return model.model_validate(raw)  # ValidationError -> 422 by error_middleware


def _translate(exc: Exception) -> ApiError | None:
    if isinstance(exc, PairingRateLimited):
        return ApiError(
            429,
            "too_many_attempts",
            str(exc),
            headers={"Retry-After": str(exc.retry_after_seconds)},
        )
    if isinstance(exc, ExpiredPairingCode):
        return ApiError(400, "pairing_code_expired", str(exc))
    if isinstance(exc, InvalidPairingCode):
        return ApiError(400, "pairing_code_invalid", str(exc))
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, "image_too_large", str(exc))
    if isinstance(exc, UnsupportedImageError):
        return ApiError(415, "unsupported_image", str(exc))
    if isinstance(exc, ImageDecodeError):
        return ApiError(400, "invalid_image", str(exc))
    if isinstance(exc, InputError):
        return ApiError(400, "bad_request", str(exc))
    if isinstance(exc, ValidationError):
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return ApiError(422, "invalid_fields", "some fields are invalid", details=details)
    return None


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One structured line per request: method, route pattern (not the query string), status,
    duration. No bodies, headers, tokens or client file names."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        access_log.info(
            "%s %s %d",
            request.method,
            route,
            status,
            extra={
                "fields": {
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                }
            },
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Project errors -> JSON 4xx; a stalled body -> 408; anything unexpected -> a JSON 500
    that logs the exception type only (or, when a response is already under way, a closed
    connection instead of a second response)."""
    limits = request.app[keys.SETTINGS].server.http
    try:
        return await guard_body(request, handler, limits)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_exception_json(exc, ("allow", "retry-after"))
    except (SkinspectorError, ValidationError) as exc:
        translated = _translate(exc)
        if translated is not None:
            return translated.response()
        return last_resort_response(request, exc)
    except RecursionError:  # deeply nested input that got past the body parsers
        return ApiError(400, "bad_request", "the request is too deeply nested").response()
    except Exception as exc:
        return last_resort_response(request, exc)
