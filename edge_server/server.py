"""Running the app: listening sockets (optional TLS), mDNS announcement, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from edge_server import keys
from edge_server.app import create_app
from edge_server.bundle import ActiveBundle, DemoBuilder
from edge_server.mdns.announcer import MdnsAnnouncer
from edge_server.routes_ops import API_VERSION
from edge_server.settings import EdgeSettings
from skinspector import __version__
from skinspector.core.http_api import listen, tls_context, wait_for_stop_signal

__all__ = ["RunningServer", "run_forever", "start_server"]

log = logging.getLogger("skinspector.server")


@dataclass
class RunningServer:
    app: web.Application
    runner: web.AppRunner
    port: int
    url: str
    announcer: MdnsAnnouncer | None
    stopped: bool = False

    async def stop(self) -> None:
        """Withdraw the mDNS announcement, then close the sockets (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        if self.announcer is not None:
            await self.announcer.stop()  # withdraw before the sockets close
        await self.runner.cleanup()


async def start_server(
    settings: EdgeSettings,
    bundle: ActiveBundle | None = None,
    demo_builder: DemoBuilder | None = None,
) -> RunningServer:
    app = create_app(settings, bundle, demo_builder)
    tls = tls_context(settings.server.tls_cert, settings.server.tls_key)
    runner, port, url = await listen(app, settings.server.host, settings.server.port, tls)
    announcer = None
    if settings.server.mdns.enabled:
        bundle_info = app[keys.BUNDLE]
        announcer = MdnsAnnouncer(
            settings.server.mdns,
            port,
            {
                "api": API_VERSION,
                "server": __version__,
                "bundle": bundle_info.version,
                "pairing": "required",
                "tls": "1" if tls else "0",
                "demo": "1" if bundle_info.demo else "0",
            },
        )
        await announcer.start()
    log.info("listening on %s", url)
    return RunningServer(app, runner, port, url, announcer)


def run_forever(settings: EdgeSettings, demo_builder: DemoBuilder | None = None) -> None:
    """``skinspector serve``: run until SIGINT/SIGTERM, then shut down cleanly."""

    async def main() -> None:
        running = await start_server(settings, demo_builder=demo_builder)
        from edge_server.routes_ops import lan_address

        phones = f"{running.url.split('://')[0]}://{lan_address()}:{running.port}/"
        print(
            f"SKINspectoR edge serving on {running.url} (phones on the LAN: {phones})", flush=True
        )
        await wait_for_stop_signal()
        await running.stop()

    asyncio.run(main())
