"""Running the hub: listening socket (optional TLS) and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass

from aiohttp import web

from skinspector.sync_agent.hub.app import create_hub_app
from skinspector.sync_agent.hub.settings import HubSettings

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


def _tls(settings: HubSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def start_hub(settings: HubSettings) -> RunningHub:
    """Create the app and listen on ``settings.host:settings.port`` (port 0: any free)."""
    app = create_hub_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    tls = _tls(settings)
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=tls)
    await site.start()
    port = settings.port
    for address in runner.addresses:
        port = int(address[1])
        break
    scheme = "https" if tls else "http"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host  # noqa: S104
    log.info("review hub listening on %s://%s:%d", scheme, settings.host, port)
    return RunningHub(app, runner, port, f"{scheme}://{host}:{port}")


def run_hub_forever(settings: HubSettings) -> None:
    """``skinspector hub serve``: run until SIGINT/SIGTERM, then shut down cleanly."""

    async def main() -> None:
        running = await start_hub(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"SKINspectoR review hub serving on {running.url}", flush=True)
        await stop.wait()
        await running.stop()

    asyncio.run(main())
