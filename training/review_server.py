"""The checkpoint review page: a local aiohttp server, or one self-contained HTML file.

Server (``skinspector review-checkpoints RUN_DIR``), bound to 127.0.0.1 by default:

- ``GET /``: the page (the review set and the stored marks embedded as JSON);
- ``GET /static/review.js``, ``/static/review.css``: the page's own files, nothing else;
- ``GET /image/<n>``: the image of review item ``n``. Only images the generations
  reference can be served: the URL carries an index into the review set, never a path;
- ``GET /api/marks`` (latest marks), ``GET /api/summary``;
- ``POST /api/marks``: one mark (JSON), checked, appended and fsynced before the answer.
  It needs the page's per-server token in ``X-Review-Token`` (another site in the
  reviewer's browser cannot read it, so cannot forge marks), and when the server listens
  on a loopback address only requests whose ``Host`` is a loopback name are answered (a
  DNS-rebinding page never is).

Static file (``--static-html FILE``): the same page and script, inlined, with every image
inlined as a data URI after the project's image preparation (orientation, sRGB, no
metadata, the model's pixel budget). Marks stay in the browser (localStorage) and are
exported as JSON for ``--import-marks``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from skinspector.core.errors import SkinspectorError
from skinspector.core.http_api import (
    ApiError,
    http_exception_json,
    listen,
    wait_for_stop_signal,
)
from skinspector.core.storage import write_atomic
from training.evaluation_errors import EvaluationInputError
from training.review import (
    EXPORT_FORMAT,
    MARK_LABELS,
    MarkStore,
    ReviewSet,
    parse_mark,
    summarize,
)

__all__ = [
    "RunningReview",
    "create_review_app",
    "page_html",
    "run_review_forever",
    "start_review_server",
    "write_static_html",
]

log = logging.getLogger("skinspector.review")

REVIEW = web.AppKey("review", ReviewSet)
STORE = web.AppKey("store", MarkStore)
TOKEN = web.AppKey("token", str)
HOSTS: web.AppKey[frozenset[str]] = web.AppKey("hosts")
ASSETS: web.AppKey[dict[str, str]] = web.AppKey("assets")

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SERVER_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; base-uri 'none'; form-action 'none'"
)
_ASSET_TYPES = {"review.js": "text/javascript", "review.css": "text/css"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _asset(name: str) -> str:
    return (resources.files("training") / "review_page" / name).read_text("utf-8")


def _embed_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` breakout)."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def page_data(
    review: ReviewSet, *, mode: str, images: list[str | None], token: str = ""
) -> dict[str, Any]:
    latest = MarkStore(review.marks_path).latest().values()
    return {
        "mode": mode,
        "token": token,
        "run": review.run_dir.name,
        "marks_path": str(review.marks_path),
        "export_format": EXPORT_FORMAT,
        "labels": [[key, title] for key, title in MARK_LABELS.items()],
        "checkpoints": [{"name": c.name, "step": c.step} for c in review.checkpoints],
        "items": [
            {
                "id": item.id,
                "image": image,
                "reference": item.reference,
                "disease": item.disease,
                "generations": [c.generations[item.id] for c in review.checkpoints],
            }
            for item, image in zip(review.items, images, strict=True)
        ],
        "marks": [m.to_json() for m in latest],
    }


def page_html(data: dict[str, Any], *, inline: bool) -> str:
    """The page around ``data``: linked assets (server) or inlined ones (static file)."""
    if inline:
        style = f"<style>\n{_asset('review.css')}</style>"
        script = f"<script>\n{_asset('review.js')}</script>"
        csp = f'<meta http-equiv="Content-Security-Policy" content="{STATIC_CSP}">'
    else:
        style = '<link rel="stylesheet" href="static/review.css">'
        script = '<script src="static/review.js"></script>'
        csp = ""
    title = _escape(f"Checkpoint review: {data['run']}")
    return (
        _asset("page.html")
        .replace("{{CSP}}", csp)
        .replace("{{TITLE}}", title)
        .replace("{{STYLE}}", style)
        .replace("{{SCRIPT}}", script)
        .replace("{{DATA}}", _embed_json(data))
    )


def write_static_html(review: ReviewSet, out: Path) -> tuple[Path, int]:
    """Write the self-contained page; returns its path and the number of missing images."""
    from skinspector.core.imaging import prepare_image

    images: list[str | None] = []
    for item in review.items:
        try:
            images.append(prepare_image(item.image.read_bytes()).data_uri())
        except (OSError, SkinspectorError) as exc:
            log.warning("image of %s not inlined: %s", item.id, exc)
            images.append(None)
    html = page_html(page_data(review, mode="static", images=images), inline=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, html.encode("utf-8"))
    return out, sum(image is None for image in images)


# ------------------------------------------------------------------------- server


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_exception_json(exc, ("allow",))
    except Exception:
        log.exception("review request failed")
        return ApiError(500, "server_error", "the review server could not do this").response()


@web.middleware
async def _host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    hosts = request.app[HOSTS]
    if hosts and _host_name(request.host or "").lower() not in hosts:
        raise ApiError(421, "wrong_host", "this server answers loopback addresses only")
    return await handler(request)


def _host_name(host: str) -> str:
    """``Host`` without its port (``[::1]:8080`` -> ``[::1]``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", SERVER_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


async def _page(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    images: list[str | None] = [f"image/{i}" for i in range(len(review.items))]
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(
        None, lambda: page_data(review, mode="server", images=images, token=request.app[TOKEN])
    )
    return web.Response(text=page_html(data, inline=False), content_type="text/html")


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    assets = request.app[ASSETS]
    if name not in assets:
        raise web.HTTPNotFound()
    return web.Response(text=assets[name], content_type=_ASSET_TYPES[name])


async def _image(request: web.Request) -> web.StreamResponse:
    review = request.app[REVIEW]
    index = int(request.match_info["index"])
    if index >= len(review.items) or not review.items[index].image.is_file():
        raise ApiError(404, "no_image", "no such image")
    return web.FileResponse(review.items[index].image)


async def _marks(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    latest = await loop.run_in_executor(None, request.app[STORE].latest)
    return web.json_response({"marks": [m.to_json() for m in latest.values()]})


async def _summary(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    marks = await loop.run_in_executor(None, request.app[STORE].read)
    summary = summarize(request.app[REVIEW], marks)
    return web.json_response({"summary": [s.to_json() for s in summary]})


async def _add_mark(request: web.Request) -> web.Response:
    token = request.headers.get("X-Review-Token", "")
    if not hmac.compare_digest(token.encode(), request.app[TOKEN].encode()):
        raise ApiError(403, "bad_token", "reload the review page (missing or stale token)")
    if request.content_type != "application/json":
        raise ApiError(415, "not_json", "send the mark as application/json")
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "bad_json", "the body is not JSON") from exc
    review, store = request.app[REVIEW], request.app[STORE]
    try:
        mark = parse_mark(body, review, keep_time=False)
    except EvaluationInputError as exc:
        raise ApiError(400, "bad_mark", str(exc)) from exc
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, store.append, [mark])
    marks = await loop.run_in_executor(None, store.read)
    summary = summarize(review, marks)
    return web.json_response({"mark": mark.to_json(), "summary": [s.to_json() for s in summary]})


def create_review_app(
    review: ReviewSet, *, token: str | None = None, hosts: Collection[str] = ()
) -> web.Application:
    """The review app; ``hosts``: the ``Host`` names answered (empty: any)."""
    app = web.Application(middlewares=[_errors, _host_check], client_max_size=64 * 1024)
    app[REVIEW] = review
    app[STORE] = MarkStore(review.marks_path)
    app[TOKEN] = token or secrets.token_urlsafe(24)
    app[HOSTS] = frozenset(h.lower() for h in hosts)
    app[ASSETS] = {name: _asset(name) for name in _ASSET_TYPES}
    app.on_response_prepare.append(_headers)
    app.router.add_get("/", _page)
    app.router.add_get("/favicon.ico", _no_icon)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get(r"/image/{index:\d{1,9}}", _image)
    app.router.add_get("/api/marks", _marks)
    app.router.add_post("/api/marks", _add_mark)
    app.router.add_get("/api/summary", _summary)
    return app


@dataclass
class RunningReview:
    app: web.Application
    runner: web.AppRunner
    port: int
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_review_server(review: ReviewSet, host: str, port: int) -> RunningReview:
    """Listen on ``host:port`` (port 0: any free one)."""
    loopback = host in LOOPBACK_NAMES or host.startswith("127.")
    hosts = (LOOPBACK_NAMES | {host}) if loopback else frozenset()
    app = create_review_app(review, hosts=hosts)
    runner, bound, url = await listen(app, host, port, None)
    return RunningReview(app, runner, bound, url + "/")


def run_review_forever(review: ReviewSet, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM."""

    async def main() -> None:
        running = await start_review_server(review, host, port)
        print(f"Checkpoint review for {review.run_dir} on {running.url}", flush=True)
        print(f"Marks are saved to {review.marks_path}. Stop with Ctrl+C.", flush=True)
        await wait_for_stop_signal()
        await running.stop()

    asyncio.run(main())
