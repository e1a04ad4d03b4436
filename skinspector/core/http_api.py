"""What the project's HTTP services (edge server, review hub) share: JSON error answers,
TLS, listening, and waiting for a stop signal.

Every API error is ``{"error": {"code", "message", ...}}`` with an HTTP status. Handlers
raise ``ApiError``; each service's error middleware turns it (and aiohttp's own HTTP
exceptions, via ``http_exception_json``) into the response.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Collection
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["ApiError", "http_exception_json", "listen", "tls_context", "wait_for_stop_signal"]


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
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return web.json_response(body, status=self.status, headers=self.headers)


def http_exception_json(exc: web.HTTPException, keep_headers: Collection[str]) -> web.Response:
    """aiohttp's 4xx/5xx (404, 405, 413...) as a JSON error, keeping only the named
    headers (lower-case) of the original answer."""
    code = exc.reason.lower().replace(" ", "_")
    return web.json_response(
        {"error": {"code": code, "message": exc.reason}},
        status=exc.status,
        headers={k: v for k, v in exc.headers.items() if k.lower() in keep_headers},
    )


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 or newer) when both PEM files are given, else None."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def listen(
    app: web.Application, host: str, port: int, tls: ssl.SSLContext | None
) -> tuple[web.AppRunner, int, str]:
    """Start ``app`` on ``host:port`` (port 0: any free one). Returns the runner, the bound
    port and a URL to reach it (127.0.0.1 when listening on every interface)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    reach = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    return runner, bound, f"{'https' if tls else 'http'}://{reach}:{bound}"


async def wait_for_stop_signal() -> None:
    """Return on SIGINT or SIGTERM (installed on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
