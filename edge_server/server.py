"""Running the app: listening sockets (optional TLS), mDNS announcement, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from edge_server import keys
from edge_server.app import create_app
from edge_server.bundle import ActiveBundle, DemoBuilder
from edge_server.mdns.announcer import MdnsAnnouncer
from edge_server.routes_ops import API_VERSION
from edge_server.settings import EdgeSettings
from skinspector import __version__
from skinspector.core.http_api import listen, tls_context, wait_for_stop_signal
from skinspector.core.storage import write_atomic

__all__ = [
    "SERVER_RECORD",
    "RunningServer",
    "phone_url",
    "read_server_record",
    "run_forever",
    "start_server",
]

log = logging.getLogger("skinspector.server")


#: ``<data-dir>/server.json``: where the running server listens (``skinspector pair`` reads
#: it, so the QR code carries the real port, e.g. ``make demo DEMO_PORT=...``).
SERVER_RECORD = "server.json"


def phone_url(scheme: str, host: str, port: int) -> str:
    """The URL a phone on the LAN uses for a server bound to ``host:port``."""
    from edge_server.routes_ops import lan_address

    reach = lan_address() if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    if ":" in reach:
        reach = f"[{reach}]"
    return f"{scheme}://{reach}:{port}"


def write_server_record(data_dir: Path, url: str, phones: str, port: int) -> Path:
    record = {"url": url, "phone_url": phones, "port": port, "pid": os.getpid()}
    path = data_dir / SERVER_RECORD
    write_atomic(path, json.dumps(record, indent=2).encode())
    return path


def read_server_record(data_dir: Path) -> dict[str, Any] | None:
    """The record of a server running now on ``data_dir`` (None if none, or stale)."""
    try:
        record = json.loads((data_dir / SERVER_RECORD).read_text())
        pid = int(record["pid"])
        str(record["phone_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # no signal sent: is that process alive?
    except ProcessLookupError:
        return None  # a server that crashed left it
    except PermissionError:
        pass  # alive, another user's
    return dict(record)


def _remove_server_record(data_dir: Path) -> None:
    path = data_dir / SERVER_RECORD
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(path.read_text())["pid"]) == os.getpid():
            path.unlink()


#: At shutdown, open requests (a phone's event stream, a chat completion) get this long to
#: finish before they are cut; Ctrl-C must not wait for them.
SHUTDOWN_REQUEST_GRACE_SECONDS = 1.0


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
        await asyncio.to_thread(_remove_server_record, self.app[keys.SETTINGS].server.data_dir)
        if self.announcer is not None:
            await self.announcer.stop()  # withdraw before the sockets close
        await self.runner.cleanup()


async def start_server(
    settings: EdgeSettings,
    bundle: ActiveBundle | None = None,
    demo_builder: DemoBuilder | None = None,
    notify_environ: Mapping[str, str] | None = None,
) -> RunningServer:
    app = create_app(settings, bundle, demo_builder, notify_environ)
    tls = tls_context(settings.server.tls_cert, settings.server.tls_key)
    runner, port, url = await listen(
        app,
        settings.server.host,
        settings.server.port,
        tls,
        settings.server.http,
        shutdown_timeout=SHUTDOWN_REQUEST_GRACE_SECONDS,
    )
    announcer = None
    if settings.server.mdns.enabled:
        served = app[keys.BUNDLE]

        def txt() -> dict[str, str]:
            return {
                "api": API_VERSION,
                "server": __version__,
                "bundle": served.version,
                "pairing": "required",
                "tls": "1" if tls else "0",
                "demo": "1" if served.demo else "0",
            }

        announcer = MdnsAnnouncer(settings.server.mdns, port, txt())
        await announcer.start()
        mdns = announcer

        async def refresh_txt() -> None:  # after a demo build, hot reload, update, rollback
            await mdns.update(txt())

        app[keys.RUNTIME].bundle_listeners.append(refresh_txt)
    phones = settings.server.public_base_url or phone_url(
        "https" if tls else "http", settings.server.host, port
    )
    try:
        await asyncio.to_thread(
            write_server_record, settings.server.data_dir, url, phones.rstrip("/"), port
        )
    except OSError as exc:
        log.error("cannot record the server's address for `skinspector pair`: %s", exc)
    log.warning("listening on %s (phones: %s)", url, phones)
    return RunningServer(app, runner, port, url, announcer)


def run_forever(
    settings: EdgeSettings,
    demo_builder: DemoBuilder | None = None,
    notify_environ: Mapping[str, str] | None = None,
) -> None:
    """``skinspector serve``: run until SIGINT/SIGTERM, then shut down cleanly. Under
    systemd (``notify_environ`` holds ``NOTIFY_SOCKET``) it reports readiness, pings the
    watchdog and says when it is stopping."""

    async def main() -> None:
        running = await start_server(
            settings, demo_builder=demo_builder, notify_environ=notify_environ
        )
        phones = phone_url(running.url.split("://")[0], settings.server.host, running.port)
        phones = (settings.server.public_base_url or phones).rstrip("/") + "/"
        print(
            f"SKINspectoR edge serving on {running.url} (phones on the LAN: {phones})", flush=True
        )
        await wait_for_stop_signal()
        started = time.monotonic()
        log.warning("stopping (signal received)")
        await running.stop()
        log.warning("stopped in %.1f s", time.monotonic() - started)
        if running.app[keys.RUNTIME].abandoned or running.app[keys.RUNTIME].demo_build_running:
            # Everything is closed and saved; only a llama.cpp generation or a first-run
            # demo build is still running on a worker thread, which the interpreter would
            # join at exit (for minutes). End the process now.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    asyncio.run(main())
