"""mDNS sockets: the machine's addresses and zeroconf instances bound to chosen interfaces.

Every query the edge server sends asks for multicast ("QM") answers. zeroconf's defaults
ask for unicast answers first ("QU": its probes and a browser's first query), and a
unicast reply to ``<address>:5353`` reaches only one of the sockets bound to that port on
the querying machine: with a second mDNS stack on the same box (avahi, another zeroconf
process, a test) the reply can land in the wrong process and be lost. So the announcer
(:mod:`edge_server.mdns.announcer`) and the browser (:mod:`edge_server.mdns.browser`) pass
``DNSQuestionType.QM`` wherever zeroconf lets them choose.
"""

from __future__ import annotations

import contextlib
import ipaddress

import ifaddr
from zeroconf import Error as ZeroconfError
from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncZeroconf

__all__ = ["MdnsError", "local_ipv4_addresses", "open_zeroconf"]


class MdnsError(Exception):
    """The service could not be announced (name conflict, socket error, bad TXT record)."""


def local_ipv4_addresses() -> list[str]:
    """The machine's non-loopback IPv4 addresses (link-local included), in interface order."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):  # IPv6 entries are (address, flow, scope) tuples
                continue
            addr = ipaddress.IPv4Address(ip.ip)
            if not (addr.is_loopback or addr.is_unspecified) and ip.ip not in found:
                found.append(ip.ip)
    return found


def _local_addresses() -> set[str]:
    """Every address (IPv4 and IPv6, without scope) configured on this machine."""
    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            with contextlib.suppress(ValueError):
                found.add(str(ipaddress.ip_address(text.split("%", 1)[0])))
    return found


def open_zeroconf(interfaces: list[str]) -> AsyncZeroconf:
    """An :class:`AsyncZeroconf` bound to ``interfaces`` (empty: all), or :class:`MdnsError`.

    Addresses are checked against the machine's own first: zeroconf fails late on an
    unknown one and leaves its listening socket open.
    """
    if interfaces:
        local = _local_addresses()
        missing = [a for a in interfaces if str(ipaddress.ip_address(a)) not in local]
        if missing:
            raise MdnsError(f"no network interface has the address(es) {', '.join(missing)}")
    try:
        return AsyncZeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All)
    except (OSError, ValueError, ZeroconfError) as exc:
        where = ", ".join(interfaces) if interfaces else "all interfaces"
        raise MdnsError(f"cannot open mDNS sockets on {where}: {exc}") from exc
