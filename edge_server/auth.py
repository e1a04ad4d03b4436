"""Request guards of the box: the Host and Origin checks (DNS rebinding, cross-site
posts), device-token authentication for ``/api`` and ``/v1``, loopback-only pages, and the
framing and content-security headers of every answer.

DNS rebinding: a web page on ``evil.example`` re-points its own name at the box's LAN
address (or 127.0.0.1) and then reads the box's pages as same-origin. Its requests carry
``Host: evil.example``, so every request whose Host is not one of the box's own names or an
IP literal is refused (400). A browser ``POST`` (or other state-changing method) whose
``Origin`` is not the box itself is refused (403): pairing and uploads cannot be driven
from another site.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from edge_server.device_tokens import Device
from edge_server.http_errors import ApiError
from edge_server.keys import DEVICES, SETTINGS

__all__ = [
    "DEVICE",
    "PHONE_APP_CSP",
    "allowed_host",
    "auth_middleware",
    "is_loopback",
    "require_loopback",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEVICE = web.RequestKey("device", Device)
_UNAUTHENTICATED = frozenset({"/api/v1/pair"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The phone app's policy (``/``, ``/app/index.html`` and its assets).
PHONE_APP_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _host_name(host: str) -> str:
    """``Host`` without its port, lower-case, brackets and trailing dot removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _own_names(request: web.Request) -> set[str]:
    server = request.app[SETTINGS].server
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    names.update(name.lower().rstrip(".") for name in server.allowed_hosts)
    if server.mdns.hostname:
        label = server.mdns.hostname.lower().rstrip(".").removesuffix(".local")
        names.update({label, f"{label}.local"})
    names.add(f"skinspector-{socket.gethostname().lower()}.local")
    if server.public_base_url:
        names.add((urlsplit(server.public_base_url).hostname or "").lower())
    return names


def allowed_host(request: web.Request, host: str | None) -> bool:
    """Whether ``host`` (a ``Host`` header) names this box: an IP literal, ``localhost``,
    its host or mDNS name, the host of ``public_base_url`` or one of ``allowed_hosts``."""
    if not host:
        return False
    name = _host_name(host)
    try:
        ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return name in _own_names(request)
    return True


def _check_host_and_origin(request: web.Request) -> None:
    if not allowed_host(request, request.headers.get("Host")):
        raise ApiError(400, "bad_host", "this request is not addressed to this box")
    origin = request.headers.get("Origin")
    if request.method in _SAFE_METHODS or origin is None:
        return
    parts = urlsplit(origin)
    if origin == "null" or f"{parts.hostname}:{parts.port}" != _origin_of_host(request):
        raise ApiError(403, "cross_origin", "requests from other sites are not accepted")


def _origin_of_host(request: web.Request) -> str:
    host = request.headers.get("Host", "")
    parts = urlsplit(f"{request.scheme}://{host}")
    port = parts.port or (443 if request.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


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
    """Host/Origin checks, then the device token on ``/api`` and ``/v1``; adds the framing
    and content-security headers to what the handler answers."""
    _check_host_and_origin(request)
    response = await _authenticated(request, handler)
    if not response.prepared:
        headers = response.headers
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        csp = headers.get("Content-Security-Policy")
        if csp is None and request.path.startswith("/app/"):
            headers["Content-Security-Policy"] = PHONE_APP_CSP
        elif csp is not None and "frame-ancestors" not in csp:
            headers["Content-Security-Policy"] = csp.rstrip("; ") + "; frame-ancestors 'none'"
        elif csp is None:
            headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response


async def _authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
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
