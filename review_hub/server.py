"""Running the hub: listening socket (optional TLS) and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from review_hub.app import create_hub_app
from review_hub.settings import HubSettings
from skinspector.core.http_api import listen, tls_context, wait_for_stop_signal

__all__ = ["RunningHub", "run_hub_forever", "start_hub"]

log = logging.getLogger("skinspector.hub")


@dataclass
class RunningHub:
    """A started hub: its app, runner and the URL it answers on."""

    app: web.Application
    runner: web.AppRunner
    port: int
    url: str
    stopped: bool = False

    async def stop(self) -> None:
        """Close the socket and the store (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        await self.runner.cleanup()


async def start_hub(settings: HubSettings) -> RunningHub:
    """Create the app and listen on ``settings.host:settings.port`` (port 0: any free)."""
    app = create_hub_app(settings)
    runner, port, url = await listen(
        app,
        settings.host,
        settings.port,
        tls_context(settings.tls_cert, settings.tls_key),
        settings.http,
    )
    log.info("review hub listening on %s", url)
    return RunningHub(app, runner, port, url)


def run_hub_forever(settings: HubSettings) -> None:
    """``skinspector hub serve``: run until SIGINT/SIGTERM, then shut down cleanly."""

    async def main() -> None:
        running = await start_hub(settings)
        print(f"SKINspectoR review hub serving on {running.url}", flush=True)
        await wait_for_stop_signal()
        await running.stop()

    asyncio.run(main())
