"""Device-token authentication for ``/api`` and ``/v1``, and loopback-only checks."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from edge_server.device_tokens import Device
from edge_server.http_errors import ApiError
from edge_server.keys import DEVICES

__all__ = ["DEVICE", "auth_middleware", "is_loopback", "require_loopback"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEVICE = web.RequestKey("device", Device)
_UNAUTHENTICATED = frozenset({"/api/v1/pair"})


def is_loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


def require_loopback(request: web.Request) -> None:
    if not is_loopback(request):
        raise ApiError(403, "forbidden", "this page is only available on the box itself")


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="skinspector"'}
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    protected = path.startswith(("/api/", "/v1/")) and path not in _UNAUTHENTICATED
    if protected:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("a device token is required: pair this device first")
        device = request.app[DEVICES].authenticate(token.strip())
        if device is None:
            raise _unauthorized("the device token is unknown or revoked: pair again")
        request[DEVICE] = device
    return await handler(request)


def current_device(request: web.Request) -> Device:
    return request[DEVICE]
