"""``create_app(settings)``: the clinic box's aiohttp application.

Resources are opened and closed in ``cleanup_ctx`` (store and devices, bundle and model,
analysis worker, bundle watcher, update checks); ``server.start_server`` adds the listening
sockets and mDNS. Nothing slow happens before the server listens: the model loads in the
background (on a maintainer's first run, after the demo bundle is built, also in the
background): ``/healthz`` answers at once, ``/readyz`` says 503 and what is being prepared
until the model is loaded, and uploads are stored meanwhile and analysed when it is ready.
At shutdown the analysis worker is cancelled first, so a pass in flight never holds it up.

Loading, fallback, hot reload and update checks of the model bundle live in
``bundle_runtime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web

from edge_server import keys
from edge_server.admission import Admission
from edge_server.auth import auth_middleware
from edge_server.box.notify import systemd_notify_context
from edge_server.bundle import (
    DEMO_WARNING,
    ActiveBundle,
    DemoBuilder,
    ServedBundle,
    resolve_served,
)
from edge_server.bundle_runtime import bundle_watch, model_context, update_checks
from edge_server.devices import DeviceRegistry
from edge_server.events import EventHub
from edge_server.http_errors import access_log_middleware, error_middleware
from edge_server.metrics import Metrics
from edge_server.routes_cases import routes as case_routes
from edge_server.routes_openai import routes as openai_routes
from edge_server.routes_ops import PHONE_APP
from edge_server.routes_ops import routes as ops_routes
from edge_server.settings import EdgeSettings
from edge_server.store import CaseStatus, CaseStore

__all__ = ["create_app"]

log = logging.getLogger("skinspector.server")


def create_app(
    settings: EdgeSettings,
    bundle: ActiveBundle | None = None,
    demo_builder: DemoBuilder | None = None,
    notify_environ: Mapping[str, str] | None = None,
) -> web.Application:
    """Build the app. ``bundle`` overrides bundle resolution (tests, benchmarks);
    ``demo_builder`` makes the demo bundle when no bundle is installed (maintainer machines;
    without it the server refuses to start and says how to install a signed bundle);
    ``notify_environ`` (the process environment under systemd) enables sd_notify readiness,
    watchdog pings and the stopping notice."""
    server = settings.server
    app = web.Application(
        middlewares=[access_log_middleware, error_middleware, auth_middleware],
        client_max_size=server.max_json_bytes,
    )
    app[keys.SETTINGS] = settings
    app[keys.EVENTS] = EventHub()
    app[keys.RUNTIME] = keys.Runtime()
    app[keys.WORK_QUEUE] = asyncio.Queue()
    for context in (
        _storage(bundle, demo_builder),
        model_context,
        _worker,
        _sync,
        bundle_watch,
        update_checks,
    ):
        app.cleanup_ctx.append(_timed(context))
    if notify_environ is not None:
        app.cleanup_ctx.append(systemd_notify_context(notify_environ))  # last: all is open
    app.add_routes(ops_routes)
    app.add_routes(case_routes)
    app.add_routes(openai_routes)
    app.router.add_static("/app/", PHONE_APP, append_version=False, follow_symlinks=False)
    app.on_response_prepare.append(_no_stale_app)
    app.on_shutdown.append(_stop_worker)
    return app


Context = Callable[[web.Application], AsyncIterator[None]]


def _timed(context: Context) -> Context:
    """Log how long a resource took to close when it held shutdown up."""
    name = getattr(context, "__name__", "context").strip("_")

    async def timed(app: web.Application) -> AsyncIterator[None]:
        inner = context(app)
        await anext(inner)
        yield
        started = time.monotonic()
        with contextlib.suppress(StopAsyncIteration):
            await anext(inner)
        took = time.monotonic() - started
        if took > 0.5:
            log.info("shutdown: closing %s took %.1f s", name, took)

    return timed


async def _no_stale_app(request: web.Request, response: web.StreamResponse) -> None:
    """Phones must revalidate the app's files (a 304 is cheap) so an updated box never
    runs old JavaScript against a new page."""
    if request.path.startswith("/app/"):
        response.headers["Cache-Control"] = "no-cache"


def _storage(bundle: ActiveBundle | None, demo_builder: DemoBuilder | None):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS]
        data_dir = settings.server.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        store = CaseStore(data_dir)
        removed = await asyncio.to_thread(store.recover)
        if removed:
            log.warning("removed %d half-stored case folders left by a crash", removed)
        app[keys.STORE] = store
        app[keys.DEVICES] = DeviceRegistry(data_dir / "devices.sqlite3", settings.server.pairing)
        metrics = Metrics(store.counts)
        app[keys.METRICS] = metrics
        app[keys.ADMISSION] = Admission(settings.server.queue_size, metrics.queue_depth.set)
        if bundle is None:
            # Quick: an installed or given bundle is only opened here. A first run's demo
            # bundle is built later, in the background, once the server listens.
            app[keys.BUNDLE] = await asyncio.to_thread(
                functools.partial(
                    resolve_served,
                    data_dir,
                    settings.server.bundle_dir,
                    settings.cache_dir,
                    demo_builder,
                    defer_demo=True,
                )
            )
        else:
            app[keys.BUNDLE] = ServedBundle(bundle)
        if app[keys.BUNDLE].demo and app[keys.BUNDLE].pending_demo is None:
            log.warning(DEMO_WARNING)
        yield
        app[keys.DEVICES].close()
        store.close()

    return context


async def _analyse_one(app: web.Application, case_id: str) -> None:
    store, hub = app[keys.STORE], app[keys.EVENTS]

    def emit(event: dict[str, object]) -> None:
        hub.publish(case_id, event)

    case = await asyncio.to_thread(store.get, case_id)
    if case is None or case.status.finished:
        return
    await asyncio.to_thread(store.set_status, case_id, CaseStatus.ANALYSING)
    emit({"type": "status", "status": CaseStatus.ANALYSING.value})
    try:
        photos = await asyncio.to_thread(
            lambda: [(store.photo_root / case.id / p.file).read_bytes() for p in case.photos]
        )
        outcome = await app[keys.RUNTIME].require_analyzer().analyse(case.context, photos, emit)
        status = CaseStatus.REJECTED if outcome.rejected else CaseStatus.DONE
        await asyncio.to_thread(store.set_status, case_id, status, result=outcome.result)
        app[keys.RUNTIME].wake_sync()  # the case can now be sent to the hub
    except asyncio.CancelledError:
        raise  # shutting down: the case stays "analysing" and resumes at the next start
    except Exception as exc:
        log.error("analysis of a case failed: %s", type(exc).__name__)
        status = CaseStatus.FAILED
        await asyncio.to_thread(
            store.set_status, case_id, status, error="the analysis failed; it can be retried"
        )
    emit({"type": "status", "status": status.value})


async def _worker(app: web.Application) -> AsyncIterator[None]:
    store, queue, admission = app[keys.STORE], app[keys.WORK_QUEUE], app[keys.ADMISSION]
    for case_id in await asyncio.to_thread(store.unfinished):
        admission.force_acquire()
        queue.put_nowait(case_id)

    async def run() -> None:
        await app[keys.RUNTIME].ready.wait()
        while True:
            case_id = await queue.get()
            try:
                async with app[keys.RUNTIME].swap_lock:  # a bundle swap waits for this case
                    await _analyse_one(app, case_id)
            finally:
                admission.release()

    task = asyncio.create_task(run())
    app[keys.RUNTIME].worker = task
    yield
    await _stop_worker(app)


async def _stop_worker(app: web.Application) -> None:
    """Cancel the analysis worker: a pass in flight stops at its next token (the engine's
    stream ends when its consumer leaves); the case stays "analysing" and is analysed
    again at the next start. Runs at shutdown before the server waits for open requests,
    so Ctrl-C never waits for an analysis to finish."""
    task = app[keys.RUNTIME].worker
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.info("stopped the analysis worker (an interrupted case resumes at the next start)")


async def _sync(app: web.Application) -> AsyncIterator[None]:
    """The outbox always exists (cases queue up before a hub is configured); the agent runs
    when a hub and clinic keys are configured (``skinspector sync init`` / ``set-hub``)."""
    from edge_server.sync_wiring import build_agent, open_outbox

    settings = app[keys.SETTINGS]
    outbox = await asyncio.to_thread(open_outbox, settings.server.data_dir)
    ids = await asyncio.to_thread(app[keys.STORE].case_ids)
    if await asyncio.to_thread(outbox.enqueue_missing, ids):
        log.warning("queued stored cases the outbox was missing (crash before enqueue)")
    app[keys.OUTBOX] = outbox
    agent = await asyncio.to_thread(build_agent, settings, app[keys.STORE], outbox)
    stop = asyncio.Event()
    task = None
    if agent is not None:
        app[keys.RUNTIME].sync_agent = agent
        task = asyncio.create_task(agent.run(stop))
        log.info("sync agent started")
    yield
    stop.set()
    if task is not None:
        try:  # a round in flight gets a grace period; its case stays queued if cut off
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            log.warning("stopped the sync agent in the middle of a round")
    outbox.close()
