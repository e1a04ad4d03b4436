"""The model bundle at run time: loading with fallback, hot reload, hub update checks.

If the active bundle fails to load, the previous slot is loaded instead (logged, and shown
in ``/api/v1/info`` as ``bundle_fallback``). The bundle watcher follows
``bundles/active.json``: when ``skinspector update`` or ``bundle rollback`` (or the
server's own hub check) activates another bundle, the new model and index load beside the
old ones, then swap in between two analyses (analyses hold ``Runtime.swap_lock``); queued
work is kept and runs on the new bundle, and the old model is closed once idle.

``model_context``, ``bundle_watch`` and ``update_checks`` are aiohttp cleanup contexts that
``create_app`` registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from edge_server import keys
from edge_server.analysis import Analyzer
from edge_server.bundle import (
    DEMO_WARNING,
    ActiveBundle,
    Fallback,
    effective_analysis,
    effective_sampling,
    read_pointer,
)
from edge_server.safety.rule_file import load_rules
from edge_server.settings import EdgeSettings
from kb_builder.manifest import CHROMA_DIR
from kb_builder.retriever import HybridRetriever
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.errors import SkinspectorError

__all__ = ["bundle_watch", "model_context", "reload_bundle", "update_checks"]

log = logging.getLogger("skinspector.server")


def _load_bundle(
    bundle: ActiveBundle, settings: EdgeSettings
) -> tuple[VisionLanguageModel, HybridRetriever | None]:
    bundle.check_prompts(settings.server.allow_prompt_mismatch)
    vlm = VisionLanguageModel(bundle.model, bundle.mmproj, settings.engine)
    try:
        retriever = HybridRetriever(bundle.index) if bundle.index else None
    except BaseException:
        vlm.close()
        raise
    return vlm, retriever


def _make_analyzer(
    app: web.Application,
    bundle: ActiveBundle,
    vlm: VisionLanguageModel,
    retriever: HybridRetriever | None,
) -> Analyzer:
    settings = app[keys.SETTINGS]
    return Analyzer(
        vlm,
        retriever,
        bundle,
        sampling=effective_sampling(bundle, settings.engine.sampling),
        analysis=effective_analysis(bundle, settings.server.analysis),
        quality=settings.server.quality,
        image=settings.image,
        rules=load_rules(),
        metrics=app[keys.METRICS],
    )


def _forget_chroma(index: Path | None) -> None:
    """Drop ChromaDB's process-wide cached system for ``index``'s store.

    ChromaDB keeps one started system per path for the whole process. A slot folder is
    reused by a later update (slot-a, slot-b, slot-a...): a cached system would keep
    serving the deleted index. Called when an index is retired, and before a hot reload
    opens an index at a path this process used before. (chromadb 1.5.9 internals.)
    """
    if index is None:
        return
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(index / CHROMA_DIR)
    with SharedSystemClient._refcount_lock:
        system = SharedSystemClient._identifier_to_system.pop(key, None)
        SharedSystemClient._identifier_to_refcount.pop(key, None)
    if system is not None:
        system.stop()


def _close_retriever(retriever: HybridRetriever | None) -> None:
    """Free a retired index: its embedder and its ChromaDB system."""
    if retriever is None:
        return
    close = getattr(retriever.embedder, "close", None)
    if callable(close):
        close()
    _forget_chroma(retriever.index_dir)


def _mark_serving(app: web.Application, bundle: ActiveBundle) -> None:
    """Tell updaters which slot is in use (they never replace it)."""
    settings, served = app[keys.SETTINGS], app[keys.BUNDLE]
    if served.watch:
        from updates.slots import SlotStore

        try:
            failed = served.fallback.failed if served.fallback is not None else None
            SlotStore(settings.server.data_dir / "bundles").mark_serving(
                bundle.slot, bundle.version, failed
            )
        except OSError as exc:
            log.error("cannot record the bundle in use (%s): updates may replace it", exc)


async def model_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    served = app[keys.BUNDLE]
    runtime = app[keys.RUNTIME]

    async def load_in_background() -> None:
        if served.pending_demo is not None and not await _build_demo(app):
            return
        error = "no bundle to load"
        for attempt, bundle in enumerate([served.current, *served.alternatives]):
            runtime.stage = f"loading the model (bundle {bundle.version})"
            log.info("loading the model of bundle %s", bundle.version)
            try:
                vlm, retriever = await asyncio.to_thread(_load_bundle, bundle, settings)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.error("the model bundle %s could not be loaded: %s", bundle.version, error)
                if attempt == 0 and served.fallback is None and served.alternatives:
                    served.fallback = Fallback(
                        bundle.slot or str(bundle.root), bundle.version, error
                    )
                continue
            if attempt > 0:
                log.error(
                    "FALLBACK: serving the previous bundle %s (%s) because the active one "
                    "failed to load",
                    bundle.version,
                    bundle.slot,
                )
                served.current = bundle
            served.alternatives = []
            runtime.model = vlm
            runtime.analyzer = _make_analyzer(app, bundle, vlm, retriever)
            await asyncio.to_thread(_mark_serving, app, bundle)
            runtime.stage = "ready"
            runtime.ready.set()
            log.warning("model ready: bundle %s", bundle.version)
            await runtime.bundle_changed()  # a fallback may serve another version
            return
        served.alternatives = []
        runtime.stage = "failed"
        runtime.error = error

    task = asyncio.create_task(load_in_background())
    yield
    building = runtime.demo_build
    if building is not None and not building.done():
        # The demo build runs minutes on a first run: do not hold Ctrl-C for it. Its
        # thread is a daemon and its files are staged and renamed into place, so an
        # abandoned build leaves no half-built bundle; the next start builds it again.
        log.warning("stopped while the demo bundle was being built; it resumes next start")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return
    # A thread cannot be cancelled: let a load in progress finish, then free what it made
    # (abandoning it half-way leaves ChromaDB's per-path client cache inconsistent).
    await task
    if runtime.analyzer is not None:
        runtime.analyzer.close()
    if runtime.model is not None:
        await _close_model_at_shutdown(runtime)


#: How long shutdown waits for the model's worker thread to stop generating.
SHUTDOWN_MODEL_GRACE_SECONDS = 1.0


async def _close_model_at_shutdown(runtime: keys.Runtime) -> None:
    """Free the model, waiting at most ``SHUTDOWN_MODEL_GRACE_SECONDS``.

    The cancelled analysis asks the engine to stop at its next token, but work between two
    tokens cannot be interrupted: an image encode or a prompt prefill (tens of seconds for a
    3B model on 2 cores), or, with llama-cpp-python's own streaming, a stretch of tokens it
    holds back because their bytes are not valid UTF-8 yet. Rather than wait, shutdown
    leaves the thread be and marks the runtime ``abandoned``; ``run_forever`` then ends the
    process once everything else is closed (the case stays "analysing" and resumes at the
    next start)."""
    model = runtime.model
    assert model is not None
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    def close() -> None:
        try:
            model.close()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(_settle_none, closed)

    threading.Thread(target=close, name="model-close", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(closed), SHUTDOWN_MODEL_GRACE_SECONDS)
    except TimeoutError:
        runtime.abandoned = True
        log.warning(
            "the model is still in the middle of a generation; not waiting for it "
            "(the interrupted case resumes at the next start)"
        )


def _settle_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _build_demo(app: web.Application) -> bool:
    """First run on a maintainer's machine: build the demo bundle (tiny model, knowledge
    base index) while the server already answers; ``/readyz`` says so meanwhile. True when
    built; on failure ``/readyz`` reports the error."""
    settings, served, runtime = app[keys.SETTINGS], app[keys.BUNDLE], app[keys.RUNTIME]
    builder = served.pending_demo
    assert builder is not None
    runtime.stage = (
        "preparing the demo bundle (a first run builds a tiny random model and the "
        "knowledge-base index: a few minutes, once)"
    )
    log.warning("%s; the server answers meanwhile, /readyz says when it is ready", runtime.stage)
    progress = logging.getLogger("skinspector.demo")  # the builder's steps, in the log
    if progress.getEffectiveLevel() > logging.INFO:
        progress.setLevel(logging.INFO)
    step = _StageFromLog(runtime, "preparing the demo bundle: ")
    progress.addHandler(step)
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ActiveBundle] = loop.create_future()

    def build() -> None:
        value: ActiveBundle | None = None
        error: BaseException | None = None
        try:
            value = ActiveBundle.open(builder(settings.cache_dir)).check()
        except BaseException as exc:  # handed to the event loop
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            loop.call_soon_threadsafe(_settle, done, value, error)

    runtime.demo_build = done
    threading.Thread(target=build, name="demo-bundle-build", daemon=True).start()
    try:
        bundle = await done
    except Exception as exc:
        progress.removeHandler(step)
        runtime.stage = "failed"
        runtime.error = f"the demo bundle could not be built: {type(exc).__name__}: {exc}"
        log.error("%s", runtime.error)
        return False
    progress.removeHandler(step)
    served.current, served.pending_demo = bundle, None
    log.warning(
        "demo bundle %s ready after %.0f s; %s",
        bundle.version,
        time.monotonic() - started,
        DEMO_WARNING,
    )
    await runtime.bundle_changed()
    return True


class _StageFromLog(logging.Handler):
    """Shows the builder's latest step in ``/readyz`` (set from the builder's thread: one
    attribute assignment, read by the event loop)."""

    def __init__(self, runtime: keys.Runtime, prefix: str) -> None:
        super().__init__(logging.INFO)
        self.runtime, self.prefix = runtime, prefix

    def emit(self, record: logging.LogRecord) -> None:
        self.runtime.stage = self.prefix + record.getMessage()


def _settle(
    future: asyncio.Future[ActiveBundle], value: ActiveBundle | None, exc: BaseException | None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    elif value is not None:
        future.set_result(value)


async def _retire(
    app: web.Application,
    model: VisionLanguageModel | None,
    analyzer: Analyzer | None,
    stop: asyncio.Event | None = None,
) -> None:
    """Close a swapped-out model once the requests that may still hold it are done (chat
    completions in flight; analyses never do, they run under the swap lock). Waits up to
    2 minutes, less when the server is stopping."""
    admission = app[keys.ADMISSION]
    for _ in range(240):
        if admission.in_flight == 0 or (stop is not None and stop.is_set()):
            break
        await asyncio.sleep(0.5)
    if analyzer is not None:
        await asyncio.to_thread(analyzer.close)
        await asyncio.to_thread(_close_retriever, analyzer.retriever)
    if model is not None:
        await asyncio.to_thread(model.close)


def _open_pointed(data_dir: Path) -> ActiveBundle | None:
    from updates.slots import SlotStore

    state = SlotStore(data_dir / "bundles").state()
    if state.active is None:
        return None
    return ActiveBundle.open(data_dir / "bundles" / state.active, state.active).check()


async def reload_bundle(
    app: web.Application, pointer: bytes | None, stop: asyncio.Event | None = None
) -> bool:
    """Load the bundle ``active.json`` names and swap it in between two analyses.
    Returns True when the served bundle changed; on any failure the old one keeps
    serving."""
    settings, served, runtime = app[keys.SETTINGS], app[keys.BUNDLE], app[keys.RUNTIME]
    try:
        bundle = await asyncio.to_thread(_open_pointed, settings.server.data_dir)
    except SkinspectorError as exc:
        log.error(
            "the newly activated bundle cannot be opened (%s); still serving %s",
            exc,
            served.version,
        )
        served.pointer = pointer
        return False
    if bundle is None or (
        bundle.root == served.root and bundle.manifest == served.manifest and runtime.model
    ):
        served.pointer = pointer
        if bundle is not None and served.fallback is not None:
            served.fallback = None  # active.json names what we serve (e.g. after rollback)
            await asyncio.to_thread(_mark_serving, app, bundle)
            await runtime.bundle_changed()
        return False
    log.info("loading bundle %s from %s (hot reload)", bundle.version, bundle.slot)
    if bundle.index is not None and bundle.index != served.index:
        await asyncio.to_thread(_forget_chroma, bundle.index)
    try:
        vlm, retriever = await asyncio.to_thread(_load_bundle, bundle, settings)
    except Exception as exc:
        log.error(
            "bundle %s failed to load (%s: %s); still serving %s",
            bundle.version,
            type(exc).__name__,
            exc,
            served.version,
        )
        served.pointer = pointer
        return False
    analyzer = _make_analyzer(app, bundle, vlm, retriever)
    async with runtime.swap_lock:
        old_model, old_analyzer = runtime.model, runtime.analyzer
        runtime.model, runtime.analyzer, runtime.error = vlm, analyzer, None
        served.current, served.pointer, served.fallback = bundle, pointer, None
        runtime.ready.set()
    await asyncio.to_thread(_mark_serving, app, bundle)
    log.warning(
        "now serving bundle %s from %s (hot reload; queued work continues on it)",
        bundle.version,
        bundle.slot,
    )
    await runtime.bundle_changed()
    await _retire(app, old_model, old_analyzer, stop)
    return True


async def bundle_watch(app: web.Application) -> AsyncIterator[None]:
    """Follow ``bundles/active.json`` (unless a bundle was given explicitly)."""
    settings, served, runtime = app[keys.SETTINGS], app[keys.BUNDLE], app[keys.RUNTIME]
    interval = settings.server.bundle_watch_seconds
    if not served.watch or interval <= 0:
        yield
        return
    stop = asyncio.Event()

    async def watch() -> None:
        while not runtime.ready.is_set() and runtime.error is None:  # initial load first
            if await _wait(stop, interval):
                return
        while not stop.is_set():
            pointer = await asyncio.to_thread(read_pointer, settings.server.data_dir)
            if pointer != served.pointer:
                await reload_bundle(app, pointer, stop)
            runtime.reload.clear()
            waiter = asyncio.create_task(runtime.reload.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            for pending in (waiter, stopper):
                pending.cancel()
            await asyncio.gather(waiter, stopper, return_exceptions=True)

    task = asyncio.create_task(watch())
    yield
    stop.set()
    await task  # a reload in progress finishes (threads cannot be cancelled)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True if stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def update_checks(app: web.Application) -> AsyncIterator[None]:
    """When a hub is configured and the box is provisioned with a trusted root, check the
    hub's repository for a newer bundle every ``updates.interval_seconds`` and install it
    (verified, smoke-tested in a child process); the watcher then hot-reloads it."""
    from edge_server.sync_wiring import hub_update_source

    settings, served, runtime = app[keys.SETTINGS], app[keys.BUNDLE], app[keys.RUNTIME]
    updates = settings.server.updates
    if not served.watch or not updates.check_hub:
        yield
        return
    data_dir = settings.server.data_dir
    stop = asyncio.Event()

    async def check_once(url: str) -> None:
        from updates.errors import UpdateError, UpdateRefusedError, UpdateSourceError
        from updates.fetcher import UpdateSource
        from updates.service import run_update

        try:
            source = UpdateSource.parse(url, timeout_seconds=updates.request_timeout_seconds)
            outcome = await asyncio.to_thread(
                run_update, data_dir, source, settings=updates, check_only=not updates.install
            )
        except UpdateSourceError as exc:
            log.info("update check: hub not reachable (%s)", exc)
            return
        except UpdateRefusedError as exc:
            log.warning("update check: REFUSED what the hub sent: %s", exc)
            return
        except UpdateError as exc:
            log.error("update check failed: %s", exc)
            return
        log.info("update check: %s", outcome.describe())
        if outcome.status == "installed":
            runtime.reload.set()

    async def loop() -> None:
        delay = updates.first_check_seconds
        while not await _wait(stop, delay):
            delay = updates.interval_seconds
            if not (runtime.ready.is_set() or runtime.error is not None):
                delay = min(delay, 5.0)  # the first check comes after the model load
                continue
            url = await asyncio.to_thread(hub_update_source, settings)
            if url is not None:
                await check_once(url)

    task = asyncio.create_task(loop())
    yield
    stop.set()
    try:  # an update in flight is crash-safe; do not hold shutdown for a long download
        await asyncio.wait_for(asyncio.shield(task), timeout=30)
    except TimeoutError:
        log.warning("stopped while an update was in progress; it resumes at the next check")
