"""``create_hub_app(settings)``: the review hub's aiohttp application.

The store and the hub's keys (``<data_dir>/hub-keys.json``, generated on first start) are
opened in ``cleanup_ctx``; :mod:`review_hub.server` adds the sockets.
Errors under ``/api``, ``/updates`` and ``/healthz`` are JSON (``{"error": {"message",
"type", "param", "code"}}``), in the review UI they are HTML pages. ``/updates/`` serves the signed
update repository (:mod:`review_hub.updates_repo`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from review_hub import api, ui, updates_repo
from review_hub.passwords import dummy_hash
from review_hub.settings import HubSettings
from review_hub.state import DUMMY_HASH, HUB_KEYS, SETTINGS, STORE, UPLOADS
from review_hub.store import HubStore, load_or_create_hub_keys
from review_hub.upload import UploadGate
from skinspector.core.http_api import (
    ApiError,
    guard_body,
    http_exception_json,
    last_resort_response,
    response_started,
)

__all__ = ["create_hub_app"]

log = logging.getLogger("skinspector.hub")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", updates_repo.UPDATES_PREFIX)) or path == "/healthz"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for the API, HTML pages for the UI; never a traceback to the client."""
    try:
        return await guard_body(request, handler, request.app[SETTINGS].http)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if _is_api(request.path):
            return http_exception_json(exc, ("allow", "retry-after"))
        return ui.error_page(request, exc.status, exc.reason, "The request could not be served.")
    except Exception as exc:
        if _is_api(request.path) or response_started(request):
            return last_resort_response(request, exc)
        log.error("request failed: %s", type(exc).__name__)
        return ui.error_page(request, 500, "Error", "The hub could not do this.")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", ui.CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cache-Control", "no-store")
    if request.app[SETTINGS].tls:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app[HUB_KEYS] = await asyncio.to_thread(load_or_create_hub_keys, settings.keys_file)
    store = await asyncio.to_thread(HubStore, settings.database)
    app[STORE] = store
    app[DUMMY_HASH] = await asyncio.to_thread(dummy_hash)
    log.info("review hub %s ready", app[HUB_KEYS].party_id)
    yield
    store.close()


def create_hub_app(settings: HubSettings) -> web.Application:
    """Build the hub app (API, review UI, stylesheet)."""
    app = web.Application(
        middlewares=[error_middleware, ui.session_middleware],
        client_max_size=settings.max_form_bytes,
    )
    app[SETTINGS] = settings
    app[UPLOADS] = UploadGate(settings.max_concurrent_uploads, settings.upload_retry_after_seconds)
    ui.setup_templates(app)
    app.cleanup_ctx.append(_resources)
    app.on_response_prepare.append(_security_headers)
    app.add_routes(api.routes)
    app.add_routes(ui.routes)
    app.add_routes(updates_repo.routes)
    app.router.add_get("/", _root)
    return app


async def _root(request: web.Request) -> web.Response:
    """``/`` -> the review queue."""
    raise web.HTTPSeeOther("/review/")
