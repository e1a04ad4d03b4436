"""Second-process mDNS browser for ``test_mdns.py``: plain zeroconf, no skinspector imports.

Usage: ``python mdns_watch.py INTERFACE SERVICE_TYPE SERVICE_NAME [MAX_SECONDS]``

Binds to INTERFACE only, browses SERVICE_TYPE and prints one JSON object per line:
``{"event": "ready"}`` once the sockets are open, then ``added`` / ``updated`` (with port,
server, addresses and TXT properties) and ``removed`` events for SERVICE_NAME (others are
ignored), each with ``t``, seconds since ``ready``. It exits when its stdin is closed, or
after MAX_SECONDS (default 30) with a ``timeout`` event.

Queries ask for multicast answers (QM): a unicast answer to 127.0.0.1:5353 would reach
only one of the sockets bound to that port on this machine, maybe the announcer's own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from zeroconf import DNSQuestionType, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf


def _emit(**fields: Any) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


class _StdinClosed(asyncio.Protocol):
    def __init__(self, closed: asyncio.Event) -> None:
        self._closed = closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()


async def _watch(interface: str, service_type: str, wanted: str, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    transport, _ = await loop.connect_read_pipe(lambda: _StdinClosed(closed), sys.stdin)
    changes: asyncio.Queue[ServiceStateChange] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name.lower() == wanted.lower():
            changes.put_nowait(state_change)

    async def report() -> None:
        while True:
            change = await changes.get()
            if change is ServiceStateChange.Removed:
                _emit(event="removed", name=wanted, t=round(time.monotonic() - start, 3))
                continue
            info = AsyncServiceInfo(service_type, wanted)
            ok = await info.async_request(azc.zeroconf, 3000, question_type=DNSQuestionType.QM)
            _emit(
                event=change.name.lower(),
                name=wanted,
                resolved=ok,
                port=info.port,
                server=info.server,
                addresses=info.parsed_addresses(),
                properties=info.decoded_properties,
                t=round(time.monotonic() - start, 3),
            )

    azc = AsyncZeroconf(interfaces=[interface])
    start = time.monotonic()
    _emit(event="ready")
    browser = AsyncServiceBrowser(
        azc.zeroconf, service_type, handlers=[on_change], question_type=DNSQuestionType.QM
    )
    reporter = loop.create_task(report())
    try:
        await asyncio.wait_for(closed.wait(), max_seconds)
    except TimeoutError:
        _emit(event="timeout", t=round(time.monotonic() - start, 3))
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        await browser.async_cancel()
        await azc.async_close()
        transport.close()


def main(argv: list[str]) -> int:
    interface, service_type, name = argv[:3]
    max_seconds = float(argv[3]) if len(argv) > 3 else 30.0
    asyncio.run(_watch(interface, service_type, name, max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
