"""Finding clinic boxes on the LAN: a short mDNS / DNS-SD browse for ``_skinspector._tcp``.

The client side of :mod:`edge_server.mdns.announcer`. Every query asks for multicast
("QM") answers; :mod:`edge_server.mdns.network` explains why.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypedDict

from zeroconf import DNSQuestionType, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from edge_server.mdns.names import SERVICE_TYPE
from edge_server.mdns.network import open_zeroconf

__all__ = ["DiscoveredService", "browse"]


class DiscoveredService(TypedDict):
    """One resolved ``_skinspector._tcp`` service, as returned by :func:`browse`."""

    name: str
    """Full service name, ``<instance>._skinspector._tcp.local.``."""
    host: str
    """Target host name of the SRV record (``*.local.``)."""
    port: int
    """TCP port of the server."""
    addresses: list[str]
    """IPv4 then IPv6 addresses, as text."""
    properties: dict[str, str | None]
    """Decoded TXT record; ``None`` for a key without ``=``."""


def _as_discovered(info: AsyncServiceInfo) -> DiscoveredService | None:
    if info.port is None or info.server is None:
        return None
    return DiscoveredService(
        name=info.name,
        host=info.server,
        port=info.port,
        addresses=info.parsed_scoped_addresses(),
        properties=dict(info.decoded_properties),
    )


async def _resolve(zc: Zeroconf, name: str, deadline: float) -> AsyncServiceInfo | None:
    """Ask for the SRV/TXT/address records of ``name`` until ``deadline`` (monotonic)."""
    info = AsyncServiceInfo(SERVICE_TYPE, name)
    remaining_ms = max((deadline - time.monotonic()) * 1000.0, 1.0)
    complete = await info.async_request(zc, remaining_ms, question_type=DNSQuestionType.QM)
    return info if complete else None


async def browse(timeout: float, interfaces: list[str]) -> list[DiscoveredService]:
    """Discover ``_skinspector._tcp.local.`` services for ``timeout`` seconds.

    ``interfaces`` are IP addresses to bind to (empty: all interfaces). Services are
    resolved as soon as they are seen; ones that said goodbye during the window, or that
    could not be resolved by its end, are left out. Results are sorted by name.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    deadline = time.monotonic() + timeout
    loop = asyncio.get_running_loop()
    azc = open_zeroconf(interfaces)
    tasks: dict[str, asyncio.Task[AsyncServiceInfo | None]] = {}

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        old = tasks.pop(name, None)
        if old is not None:
            old.cancel()
        if state_change is not ServiceStateChange.Removed:
            tasks[name] = loop.create_task(_resolve(zeroconf, name, deadline))

    browser: AsyncServiceBrowser | None = None
    try:
        browser = AsyncServiceBrowser(
            azc.zeroconf, SERVICE_TYPE, handlers=[on_change], question_type=DNSQuestionType.QM
        )
        await asyncio.sleep(max(deadline - time.monotonic(), 0.0))
        found: list[DiscoveredService] = []
        for name, task in sorted(tasks.items()):
            info: AsyncServiceInfo | None = None
            if task.done() and not task.cancelled() and task.exception() is None:
                info = task.result()
            else:  # still asking: take whatever the cache holds by now
                cached = AsyncServiceInfo(SERVICE_TYPE, name)
                if cached.load_from_cache(azc.zeroconf):
                    info = cached
            entry = _as_discovered(info) if info is not None else None
            if entry is not None:
                found.append(entry)
        return found
    finally:
        pending = [t for t in tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if browser is not None:
            await browser.async_cancel()
        await azc.async_close()
