"""Typed application keys: every shared object of the app, in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from edge_server.admission import Admission
from edge_server.analysis import Analyzer
from edge_server.bundle import ActiveBundle, ServedBundle
from edge_server.devices import DeviceRegistry
from edge_server.events import EventHub
from edge_server.metrics import Metrics
from edge_server.settings import EdgeSettings
from edge_server.store import CaseStore
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.errors import ModelError
from sync_agent.outbox import Outbox

if TYPE_CHECKING:
    from sync_agent.agent import SyncAgent

__all__ = [
    "ADMISSION",
    "BUNDLE",
    "DEVICES",
    "EVENTS",
    "METRICS",
    "OUTBOX",
    "RUNTIME",
    "SETTINGS",
    "STORE",
    "WORK_QUEUE",
    "Runtime",
]

log = logging.getLogger("skinspector.server")


@dataclass
class Runtime:
    """What loads after start-up (the app's own mapping is frozen once it runs)."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    model: VisionLanguageModel | None = None
    analyzer: Analyzer | None = None
    error: str | None = None
    sync_agent: SyncAgent | None = None
    # Hot reload: analyses run under ``swap_lock``, so a bundle swap happens between two
    # analyses; ``reload`` asks the bundle watcher to look at active.json now.
    swap_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reload: asyncio.Event = field(default_factory=asyncio.Event)
    # What ``/readyz`` says is being prepared until the model is ready.
    stage: str = "starting"
    # Called after the served bundle changed (demo built, hot reload, update, rollback,
    # fallback): e.g. the mDNS announcement refreshes its TXT record.
    bundle_listeners: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The analysis worker: cancelled first thing at shutdown, so a pass in flight stops at
    # its next token (the case stays "analysing" and resumes at the next start).
    worker: asyncio.Task[None] | None = None
    demo_build: asyncio.Future[ActiveBundle] | None = None  # first run: the demo build
    # Set at shutdown when the model's thread was still generating and was left running:
    # the process must then end without joining it (``server.run_forever`` does).
    abandoned: bool = False

    @property
    def demo_build_running(self) -> bool:
        return self.demo_build is not None and not self.demo_build.done()

    async def bundle_changed(self) -> None:
        for listener in list(self.bundle_listeners):
            try:
                await listener()
            except Exception as exc:  # a listener's failure never stops the server
                log.error("after a bundle change: %s: %s", type(exc).__name__, exc)

    def wake_sync(self) -> None:
        if self.sync_agent is not None:
            self.sync_agent.wake()

    def require_analyzer(self) -> Analyzer:
        if self.analyzer is None:
            raise ModelError("the model is not loaded yet")
        return self.analyzer


SETTINGS = web.AppKey("settings", EdgeSettings)
BUNDLE = web.AppKey("bundle", ServedBundle)
STORE = web.AppKey("store", CaseStore)
DEVICES = web.AppKey("devices", DeviceRegistry)
EVENTS = web.AppKey("events", EventHub)
METRICS = web.AppKey("metrics", Metrics)
ADMISSION = web.AppKey("admission", Admission)
RUNTIME = web.AppKey("runtime", Runtime)
OUTBOX = web.AppKey("outbox", Outbox)
WORK_QUEUE: web.AppKey[asyncio.Queue[str]] = web.AppKey("work_queue")
