"""What the project's HTTP services (edge server, review hub) share: JSON error answers,
TLS, listening, and waiting for a stop signal.

Every API error is ``{"error": {"message", "type", "param", "code", ...}}`` (OpenAI's
shape) with an HTTP status. Handlers
raise ``ApiError``; each service's error middleware turns it (and aiohttp's own HTTP
exceptions, via ``http_exception_json``) into the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApiError",
    "BodyTimeout",
    "HttpLimits",
    "guard_body",
    "http_exception_json",
    "last_resort_response",
    "listen",
    "response_started",
    "tls_context",
    "wait_for_stop_signal",
]

log = logging.getLogger("skinspector.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", ...}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> web.Response:
        body = {"error": error_object(self.status, self.code, self.message, **self.extra)}
        return web.json_response(body, status=self.status, headers=self.headers)


def error_object(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error object every API answers with; it has OpenAI's shape (``message``,
    ``type``, ``param``, ``code``), so the stock OpenAI clients read every error of the
    box's ``/v1`` routes, the ones raised outside them (401, 405, 413...) included."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"message": message, "type": kind, "param": None, "code": code, **extra}


def http_exception_json(exc: web.HTTPException, keep_headers: Collection[str]) -> web.Response:
    """aiohttp's 4xx/5xx (404, 405, 413...) as a JSON error, keeping only the named
    headers (lower-case) of the original answer."""
    code = exc.reason.lower().replace(" ", "_")
    return web.json_response(
        {"error": error_object(exc.status, code, exc.reason)},
        status=exc.status,
        headers={k: v for k, v in exc.headers.items() if k.lower() in keep_headers},
    )


class HttpLimits(BaseModel):
    """Socket-level limits of a listening server (slow-loris and socket-exhaustion guards).

    * ``header_timeout``: a connection must deliver a complete request head within this
      many seconds of connecting or of its previous answer (a silent socket, or headers
      trickled a byte at a time, is closed). aiohttp's keep-alive timer enforces it.
    * ``body_idle_timeout``: a request body that makes no progress for this long while the
      handler waits for it is cut off with 408 and the connection closed.
    * ``body_timeout``: the whole body must arrive within this many seconds.
    * ``max_connections`` / ``max_connections_per_client``: open sockets at most, in all and
      from one client address; a connection over either cap is closed at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    header_timeout: float = Field(15.0, gt=0, le=600, description="Seconds for a request head.")
    body_idle_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds a body may stall.")
    body_timeout: float = Field(600.0, gt=0, le=86_400, description="Seconds for a whole body.")
    max_connections: int = Field(256, ge=1, le=100_000, description="Open sockets at most.")
    max_connections_per_client: int = Field(
        32, ge=1, le=100_000, description="Open sockets from one client address at most."
    )


class BodyTimeout(Exception):
    """The client stopped sending (or sent too slowly) a request body."""


def _body_timeout_response() -> web.Response:
    response = ApiError(408, "request_timeout", "the request body stalled").response()
    response.force_close()
    return response


async def guard_body(
    request: web.Request, handler: Handler, limits: HttpLimits
) -> web.StreamResponse:
    """Run ``handler`` with a watchdog on the request body: a body that stalls for
    ``body_idle_timeout`` or is not complete after ``body_timeout`` fails the handler's
    read with :class:`BodyTimeout` (answered 408, connection closed)."""
    content = request.content
    if not request.body_exists or content.is_eof():
        return await handler(request)
    tripped = False

    async def watch() -> None:
        nonlocal tripped
        started = last_move = time.monotonic()
        seen = content.total_bytes
        tick = min(limits.body_idle_timeout, limits.body_timeout) / 4
        while not content.is_eof():
            await asyncio.sleep(tick)
            now = time.monotonic()
            if content.total_bytes != seen:
                seen, last_move = content.total_bytes, now
            waiting = content.is_eof() is False and content._size == 0
            if (waiting and now - last_move >= limits.body_idle_timeout) or (
                now - started >= limits.body_timeout
            ):
                tripped = True
                content.set_exception(BodyTimeout())
                return

    watchdog = asyncio.create_task(watch())
    try:
        return await handler(request)
    except Exception:
        if tripped:
            return _body_timeout_response()
        raise
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


def response_started(request: web.Request) -> bool:
    """Whether a response to ``request`` already went (partly) to the client: a stream
    that fails half-way must not get a second response written after it."""
    writer = request.writer
    return writer.output_size > 0 or bool(getattr(writer, "_headers_buf", b""))


class _AlreadyAnswered(web.StreamResponse):
    """Stands for a response that was under way when its handler failed: aiohttp's own
    finishing does nothing with it (the connection is already closed)."""

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def last_resort_response(request: web.Request, exc: BaseException) -> web.StreamResponse:
    """The answer to an unexpected exception: a JSON 500; the log names the exception type
    only (its message may carry patient data). When a response is already under way, no
    second one is written: the connection is closed instead."""
    log.error("request failed: %s", type(exc).__name__)
    if response_started(request):
        if request.transport is not None:
            request.transport.close()
        answered = _AlreadyAnswered(status=500)
        answered.force_close()
        return answered
    response = ApiError(500, "server_error", "the server could not do this").response()
    response.force_close()
    return response


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 or newer) when both PEM files are given, else None."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class _Caps:
    """Open connections, in all and per client address."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: dict[str, int] = {}
        self.transports: set[asyncio.BaseTransport] = set()

    def admit(self, client: str) -> bool:
        if self.total >= self.limits.max_connections:
            return False
        if self.per_client.get(client, 0) >= self.limits.max_connections_per_client:
            return False
        self.total += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1
        return True

    def abort_all(self) -> None:
        """Close every connection still open once the server has shut down (one that
        arrived while it was stopping is otherwise never closed)."""
        for transport in list(self.transports):
            if not transport.is_closing():
                transport.abort()  # type: ignore[attr-defined]
        self.transports.clear()

    def leave(self, client: str) -> None:
        self.total -= 1
        left = self.per_client.get(client, 1) - 1
        if left <= 0:
            self.per_client.pop(client, None)
        else:
            self.per_client[client] = left


class _Capped(asyncio.Protocol):
    """Counts a connection against the caps; over a cap it is closed before aiohttp sees
    it. Otherwise every call goes to aiohttp's own protocol."""

    def __init__(self, inner: asyncio.Protocol, caps: _Caps) -> None:
        self._inner, self._caps = inner, caps
        self._client: str | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._caps.admit(client):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._client = client
        self._transport = transport
        self._caps.transports.add(transport)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is None:
            return
        self._caps.transports.discard(self._transport)
        self._caps.leave(self._client)
        self._client = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._client is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _CappedRunner(web.AppRunner):
    """An AppRunner that, once aiohttp's graceful shutdown is over, closes any connection
    the caps still hold."""

    def __init__(self, app: web.Application, caps: _Caps, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.caps = caps

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self.caps.abort_all()


class _CappedSite(web.TCPSite):
    def __init__(self, runner: web.AppRunner, caps: _Caps, *args: Any, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)
        self._caps = caps

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        caps = self._caps
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Capped(server(), caps),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


async def listen(
    app: web.Application,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    limits: HttpLimits | None = None,
    *,
    shutdown_timeout: float = 5,
) -> tuple[web.AppRunner, int, str]:
    """Start ``app`` on ``host:port`` (port 0: any free one) under ``limits`` (default
    :class:`HttpLimits`); at shutdown open requests get ``shutdown_timeout`` seconds.
    Returns the runner, the bound port and a URL to reach it (127.0.0.1 when listening on
    every interface)."""
    limits = limits or HttpLimits()
    caps = _Caps(limits)
    runner = _CappedRunner(
        app,
        caps,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=limits.header_timeout,
        timeout_ceil_threshold=0.5,
    )
    await runner.setup()
    try:
        await _CappedSite(runner, caps, host, port, ssl_context=tls).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    reach = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    return runner, bound, f"{'https' if tls else 'http'}://{reach}:{bound}"


async def wait_for_stop_signal() -> None:
    """Return on SIGINT or SIGTERM (installed on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
