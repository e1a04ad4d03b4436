"""Running the app: listening sockets (optional TLS), mDNS announcement, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass

from aiohttp import web

from skinspector import __version__
from skinspector.edge_server import keys
from skinspector.edge_server.app import create_app
from skinspector.edge_server.bundle import ActiveBundle
from skinspector.edge_server.mdns import MdnsAnnouncer
from skinspector.edge_server.routes_ops import API_VERSION
from skinspector.edge_server.settings import EdgeSettings

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


def _tls(settings: EdgeSettings) -> ssl.SSLContext | None:
    server = settings.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server.tls_cert, server.tls_key)
    return context


async def start_server(settings: EdgeSettings, bundle: ActiveBundle | None = None) -> RunningServer:
    app = create_app(settings, bundle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    tls = _tls(settings)
    site = web.TCPSite(runner, settings.server.host, settings.server.port, ssl_context=tls)
    await site.start()
    port = settings.server.port
    for address in runner.addresses:  # the bound (host, port, ...) of each socket
        port = int(address[1])
        break
    scheme = "https" if tls else "http"
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "") else settings.server.host  # noqa: S104
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
    log.info("listening on %s://%s:%d", scheme, settings.server.host, port)
    return RunningServer(app, runner, port, f"{scheme}://{host}:{port}", announcer)


def run_forever(settings: EdgeSettings) -> None:
    """``skinspector serve``: run until SIGINT/SIGTERM, then shut down cleanly."""

    async def main() -> None:
        running = await start_server(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from skinspector.edge_server.routes_ops import lan_address

        phones = f"{running.url.split('://')[0]}://{lan_address()}:{running.port}/"
        print(
            f"SKINspectoR edge serving on {running.url} (phones on the LAN: {phones})", flush=True
        )
        await stop.wait()
        await running.stop()

    asyncio.run(main())
