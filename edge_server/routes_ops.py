"""Operations and pairing: health, readiness, metrics, the status page, pairing."""

from __future__ import annotations

import asyncio
import html
import socket
import time

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edge_server.auth import PHONE_APP_CSP, current_device, is_loopback, require_loopback
from edge_server.bundle import DEMO_WARNING
from edge_server.http_errors import json_body
from edge_server.keys import ADMISSION, BUNDLE, DEVICES, METRICS, RUNTIME, SETTINGS
from edge_server.qr import pairing_url, qr_svg
from skinspector import __version__
from skinspector.core.resources import resource_dir

__all__ = ["API_VERSION", "base_url", "lan_address", "routes"]

API_VERSION = "1"
routes = web.RouteTableDef()


def lan_address() -> str:
    """This machine's primary LAN IPv4 address (no packet is sent), or 127.0.0.1."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def base_url(request: web.Request) -> str:
    """The URL a phone on the LAN uses: configured, else the LAN address and our port."""
    settings = request.app[SETTINGS].server
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    if is_loopback(request):
        port = request.url.port or (443 if request.scheme == "https" else 80)
        return f"{request.scheme}://{lan_address()}:{port}"
    return f"{request.scheme}://{request.host}"


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.error is not None:
        return web.json_response({"status": "failed", "error": runtime.error}, status=503)
    if not runtime.ready.is_set():
        return web.json_response(
            {"status": "loading", "stage": runtime.stage},
            status=503,
            headers={"Retry-After": "5"},
        )
    return web.json_response({"status": "ready", "queue": request.app[ADMISSION].in_flight})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(request.app[METRICS].render)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


@routes.get("/api/v1/info")
async def info(request: web.Request) -> web.Response:
    bundle = request.app[BUNDLE]
    body = {
        "api_version": API_VERSION,
        "server_version": __version__,
        "bundle_version": bundle.version,
        "model_id": bundle.manifest.model_id,
        "demo": bundle.demo,
        "device": current_device(request).name,
        "ready": request.app[RUNTIME].ready.is_set(),
        "stage": request.app[RUNTIME].stage,
        **bundle.info(),
    }
    if bundle.demo:
        body["demo_warning"] = DEMO_WARNING
    return web.json_response(body)


class PairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: str = Field(min_length=1, max_length=32)
    device_name: str = Field(min_length=1, max_length=64)


@routes.post("/api/v1/pair")
async def pair(request: web.Request) -> web.Response:
    """Exchange a one-time pairing code for a device token (returned once)."""
    body = await json_body(request, PairRequest)
    issued = await asyncio.to_thread(
        request.app[DEVICES].redeem, body.code, body.device_name, request.remote or "unknown"
    )
    return web.json_response(
        {"device_id": issued.device_id, "name": issued.name, "token": issued.token}, status=201
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}
.demo{{background:#b00020;color:#fff;padding:1em;font-weight:bold}}
.code{{font-size:2.5em;letter-spacing:.2em;font-family:monospace}}</style></head>
<body>{banner}{body}</body></html>"""


PHONE_APP = resource_dir("clients", "phone")


@routes.get("/")
@routes.get("/app/")
async def phone_app(request: web.Request) -> web.FileResponse:
    """The phone web app (``clients/phone``); its assets are served under ``/app/``."""
    return web.FileResponse(
        PHONE_APP / "index.html",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": PHONE_APP_CSP},
    )


def _page(request: web.Request, title: str, body: str) -> web.Response:
    banner = (
        f'<p class="demo" role="alert">{html.escape(DEMO_WARNING)}</p>'
        if request.app[BUNDLE].demo
        else ""
    )
    return web.Response(
        text=_PAGE.format(title=html.escape(title), banner=banner, body=body),
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; "
            "style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        },
    )


@routes.get("/status")
async def status_page(request: web.Request) -> web.Response:
    bundle = request.app[BUNDLE]
    ready = request.app[RUNTIME].ready.is_set()
    body = (
        f"<h1>SKINspectoR edge</h1><p>Server {html.escape(__version__)}, bundle "
        f"{html.escape(bundle.version)}, model {'ready' if ready else 'loading'}.</p>"
        "<p>Pair a phone from this box's own screen: <code>skinspector pair</code> or "
        '<a href="/pair">/pair</a>.</p>'
    )
    return _page(request, "SKINspectoR edge", body)


@routes.get("/pair")
async def pair_page(request: web.Request) -> web.Response:
    """Only from the box itself: shows a fresh one-time code and its QR code."""
    require_loopback(request)
    code = await asyncio.to_thread(request.app[DEVICES].create_pairing_code)
    url = pairing_url(base_url(request), code.code)
    minutes = max(1, round((code.expires_at - time.time()) / 60))
    body = (
        f"<h1>Pair a phone</h1><p>Scan with the phone's camera, or type the code in the "
        f"app. It works once and expires in {minutes} minutes.</p>"
        f'<p class="code">{html.escape(code.code)}</p>{qr_svg(url)}'
        f"<p><small>{html.escape(url)}</small></p>"
    )
    return _page(request, "Pair a phone", body)
