"""mDNS / DNS-SD announcement of the clinic box, and a small browser for clients.

Phones and tools on the clinic LAN find the server by browsing ``_skinspector._tcp.local.``.
:class:`MdnsAnnouncer` registers one service instance with zeroconf's asyncio API: an SRV
record pointing at a ``.local`` host name, A/AAAA records for the announced addresses and a
TXT record the server fills with versions and flags. :func:`browse` is the client side.

Names follow the DNS-SD rules: the host name is a single LDH label (letters, digits,
hyphens; at most 63 characters) under ``local.``; the instance name is free UTF-8 text
without control characters. When another responder already uses the instance name,
zeroconf renames ours to ``<instance>-2`` (``-3``, ...) unless the announcer was built with
``allow_name_change=False``, in which case :class:`MdnsError` is raised. zeroconf does not
probe host names: two boxes cloned with the same host name announce the same ``.local``
name, so clients should use the addresses that come with the service, not the host name.

Every query this module sends asks for multicast ("QM") answers. zeroconf's defaults ask
for unicast answers first ("QU": its probes and a browser's first query), and a unicast
reply to ``<address>:5353`` reaches only one of the sockets bound to that port on the
querying machine: with a second mDNS stack on the same box (avahi, another zeroconf
process, a test) the reply can land in the wrong process and be lost. For the same reason
the announcer runs a short QM browse while zeroconf probes its name, so that a same-named
service already announced on the LAN or on this machine is in zeroconf's cache when it
checks for conflicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import socket
import time
import unicodedata
from collections.abc import Mapping
from typing import TypedDict

import ifaddr
from pydantic import BaseModel, ConfigDict, Field, field_validator
from zeroconf import (
    BadTypeInNameException,
    DNSQuestionType,
    InterfaceChoice,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = [
    "SERVICE_TYPE",
    "DiscoveredService",
    "MdnsAnnouncer",
    "MdnsError",
    "MdnsSettings",
    "browse",
    "default_hostname",
    "default_instance_name",
    "local_ipv4_addresses",
    "sanitize_dns_label",
]

#: The DNS-SD service type every SKINspectoR edge server announces.
SERVICE_TYPE = "_skinspector._tcp.local."

_HOST_PREFIX = "skinspector"
_MAX_LABEL = 63
#: Instance names stay below the 63-byte DNS label limit so that zeroconf's conflict
#: suffix (``-2``, ``-3``, ...) still fits.
_MAX_INSTANCE_BYTES = 56
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: A TXT entry (``key=value``) is one length-prefixed string: 255 bytes at most.
_MAX_TXT_ENTRY = 255


class MdnsError(Exception):
    """The service could not be announced (name conflict, socket error, bad TXT record)."""


# --------------------------------------------------------------------------- names


def sanitize_dns_label(text: str, *, max_length: int = _MAX_LABEL) -> str:
    """Turn arbitrary text into a valid lower-case DNS label (RFC 1123 LDH rules).

    Accents are folded (``"Clínica"`` -> ``"clinica"``), every other character outside
    ``[a-z0-9]`` becomes a hyphen, runs of hyphens collapse, leading and trailing hyphens
    go, and the result is cut to ``max_length`` characters. Text with nothing usable left
    (e.g. only CJK characters) maps to ``host-<8 hex digits>``, a stable digest of the
    input, so that two such machines still get different names.
    """
    if not 1 <= max_length <= _MAX_LABEL:
        raise ValueError(f"max_length must be within 1..{_MAX_LABEL}, got {max_length}")
    folded = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(ch for ch in folded if not unicodedata.combining(ch))
    label = re.sub(r"[^a-z0-9]+", "-", ascii_only.lower()).strip("-")
    if not label:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        label = f"host-{digest[:8]}"
    return label[:max_length].rstrip("-")


def _short_host(raw: str | None) -> str:
    """The first label of ``raw`` (default: ``socket.gethostname()``)."""
    name = socket.gethostname() if raw is None else raw
    return name.strip().split(".", 1)[0]


def default_hostname(raw: str | None = None) -> str:
    """The ``.local.`` host name to announce, derived from the machine's host name.

    ``"Clinic_Box.lan"`` gives ``"skinspector-clinic-box.local."``; a name that already
    starts with ``skinspector`` is not prefixed twice. ``raw`` defaults to
    :func:`socket.gethostname`.
    """
    label = sanitize_dns_label(_short_host(raw))
    if label != _HOST_PREFIX and not label.startswith(f"{_HOST_PREFIX}-"):
        label = sanitize_dns_label(f"{_HOST_PREFIX}-{label}")
    return f"{label}.local."


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore").rstrip()


def default_instance_name(raw: str | None = None) -> str:
    """``"SKINspectoR on <short host name>"``, within the DNS-SD instance-name limits."""
    host = _CONTROL_RE.sub("", _short_host(raw)).strip()
    name = f"SKINspectoR on {host}" if host else "SKINspectoR"
    return _truncate_utf8(name, _MAX_INSTANCE_BYTES)


# --------------------------------------------------------------------------- settings


class MdnsSettings(BaseModel):
    """How (and whether) the edge server announces itself on the LAN."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Announce the server by mDNS/DNS-SD.")
    interfaces: list[str] = Field(
        default_factory=list,
        description=(
            "IP addresses of the interfaces to bind to and announce, e.g. ['192.168.1.20']. "
            "Empty: all interfaces, announcing every non-loopback IPv4 address "
            "(127.0.0.1 when there is none)."
        ),
    )
    hostname: str | None = Field(
        None,
        description=(
            "The .local host name the SRV record points at ('box', 'box.local' or "
            "'box.local.'; one DNS label). None: 'skinspector-<sanitised host name>.local.'."
        ),
    )
    instance_name: str | None = Field(
        None,
        description=(
            "Human-readable service instance name shown by browsers (UTF-8, at most "
            f"{_MAX_INSTANCE_BYTES} bytes). None: 'SKINspectoR on <host name>'."
        ),
    )

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: list[str]) -> list[str]:
        """Each entry must be a unicast IP address; duplicates are dropped."""
        out: list[str] = []
        for entry in value:
            try:
                addr = ipaddress.ip_address(entry.strip())
            except ValueError as exc:
                raise ValueError(f"interface {entry!r} is not an IP address") from exc
            if addr.is_unspecified or addr.is_multicast:
                raise ValueError(f"interface {entry!r} must be a unicast address")
            if str(addr) not in out:
                out.append(str(addr))
        return out

    @field_validator("hostname")
    @classmethod
    def _check_hostname(cls, value: str | None) -> str | None:
        """Normalise to ``<label>.local.`` and require a valid LDH label."""
        if value is None:
            return None
        label = value.strip().rstrip(".").lower().removesuffix(".local")
        if not _LABEL_RE.fullmatch(label):
            raise ValueError(
                f"hostname {value!r} must be one DNS label under .local: letters, digits "
                "and inner hyphens, 1-63 characters"
            )
        return f"{label}.local."

    @field_validator("instance_name")
    @classmethod
    def _check_instance_name(cls, value: str | None) -> str | None:
        """Non-empty, no control characters, short enough for a DNS label."""
        if value is None:
            return None
        name = value.strip()
        if not name:
            raise ValueError("instance_name must not be empty")
        if _CONTROL_RE.search(name):
            raise ValueError("instance_name must not contain control characters")
        if len(name.encode("utf-8")) > _MAX_INSTANCE_BYTES:
            raise ValueError(f"instance_name must be at most {_MAX_INSTANCE_BYTES} UTF-8 bytes")
        return name


# --------------------------------------------------------------------------- sockets


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


def _open_zeroconf(interfaces: list[str]) -> AsyncZeroconf:
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


def _ignore_change(
    zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
) -> None:
    """Browser handler for a browse that only fills zeroconf's cache."""


def _txt_record(properties: Mapping[str, str]) -> dict[str, str]:
    """Validate TXT key/value pairs (RFC 6763 section 6) and copy them."""
    txt: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in properties.items():
        if not key or "=" in key or not key.isascii() or not key.isprintable():
            raise MdnsError(f"TXT key {key!r} must be non-empty printable ASCII without '='")
        if key.lower() in seen:
            raise MdnsError(f"TXT key {key!r} given twice (keys are case-insensitive)")
        if len(f"{key}={value}".encode()) > _MAX_TXT_ENTRY:
            raise MdnsError(f"TXT entry {key!r} is longer than {_MAX_TXT_ENTRY} bytes")
        seen.add(key.lower())
        txt[key] = value
    return txt


# --------------------------------------------------------------------------- announcer


class MdnsAnnouncer:
    """Registers the edge server as ``<instance>._skinspector._tcp.local.``.

    Use from a running event loop (e.g. aiohttp's ``on_startup`` / ``on_cleanup``)::

        announcer = MdnsAnnouncer(settings.mdns, port, {"api": "1", "tls": "1"})
        await announcer.start()
        ...
        await announcer.update({"api": "1", "tls": "1", "bundle": "2025.06"})
        ...
        await announcer.stop()

    ``start`` and ``stop`` are idempotent, and the announcer may be started again after a
    stop. ``settings.enabled`` is the caller's decision: the announcer does not read it.
    """

    def __init__(
        self,
        settings: MdnsSettings,
        port: int,
        properties: Mapping[str, str],
        *,
        allow_name_change: bool = True,
    ) -> None:
        """Prepare (but do not send) the announcement.

        ``port`` is the server's TCP port; ``properties`` the TXT record (invalid keys or
        over-long entries raise :class:`MdnsError`). ``allow_name_change=False`` turns an
        instance-name conflict into :class:`MdnsError` instead of zeroconf's ``-2`` rename.
        """
        if not 0 < port < 65536:
            raise ValueError(f"port must be within 1..65535, got {port}")
        self._settings = settings
        self._port = port
        self._properties = _txt_record(properties)
        self._allow_name_change = allow_name_change
        self._hostname = settings.hostname or default_hostname()
        self._instance = settings.instance_name or default_instance_name()
        self._addresses: list[str] = []
        self._azc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._lock = asyncio.Lock()

    @property
    def service_name(self) -> str:
        """Full service name, e.g. ``"SKINspectoR on box._skinspector._tcp.local."``.

        While running this includes any rename made to resolve a name conflict.
        """
        if self._info is not None:
            return str(self._info.name)
        return f"{self._instance}.{SERVICE_TYPE}"

    @property
    def hostname(self) -> str:
        """The ``.local.`` host name the SRV record points at."""
        return self._hostname

    @property
    def addresses(self) -> list[str]:
        """Addresses announced by the running service (empty while stopped)."""
        return list(self._addresses)

    @property
    def properties(self) -> dict[str, str]:
        """The current TXT record."""
        return dict(self._properties)

    @property
    def running(self) -> bool:
        """Whether the service is registered."""
        return self._azc is not None

    def _build_info(self, name: str, addresses: list[str]) -> AsyncServiceInfo:
        try:
            return AsyncServiceInfo(
                SERVICE_TYPE,
                name,
                port=self._port,
                properties=dict(self._properties),
                server=self._hostname,
                parsed_addresses=addresses,
            )
        except (ZeroconfError, ValueError) as exc:
            raise MdnsError(f"invalid mDNS service {name!r}: {exc}") from exc

    async def start(self) -> None:
        """Register the service and return once it has been announced (~1.5 s).

        Raises :class:`MdnsError` when the sockets cannot be opened or the name is taken
        and renaming is not allowed. Does nothing when already running.
        """
        async with self._lock:
            if self._azc is not None:
                return
            if self._settings.interfaces:
                addresses = list(self._settings.interfaces)
            else:
                addresses = local_ipv4_addresses() or ["127.0.0.1"]
            info = self._build_info(self.service_name, addresses)
            azc = _open_zeroconf(self._settings.interfaces)
            try:
                # Lets answers from services already announced reach zeroconf's cache
                # while it probes (~0.7 s); see the module docstring.
                peers = AsyncServiceBrowser(
                    azc.zeroconf,
                    SERVICE_TYPE,
                    handlers=[_ignore_change],
                    question_type=DNSQuestionType.QM,
                )
                try:
                    announced = await azc.async_register_service(
                        info, allow_name_change=self._allow_name_change
                    )
                finally:
                    await peers.async_cancel()
                await announced
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await azc.async_close()
                if isinstance(exc, NonUniqueNameException):
                    raise MdnsError(
                        f"mDNS service name {info.name!r} is already in use on the network; "
                        "choose another mdns.instance_name"
                    ) from exc
                if isinstance(exc, BadTypeInNameException):
                    raise MdnsError(f"invalid mDNS service name {info.name!r}: {exc}") from exc
                if isinstance(exc, ZeroconfError | OSError):
                    raise MdnsError(f"mDNS registration failed: {exc!r}") from exc
                raise
            self._azc, self._info, self._addresses = azc, info, addresses

    async def update(self, properties: Mapping[str, str]) -> None:
        """Replace the TXT record; a running service re-announces it (~0.5 s).

        Unchanged properties send nothing. While stopped, the new record is kept for the
        next :meth:`start`.
        """
        txt = _txt_record(properties)
        async with self._lock:
            if txt == self._properties:
                return
            self._properties = txt
            if self._azc is None or self._info is None:
                return
            info = self._build_info(self._info.name, self._addresses)
            try:
                announced = await self._azc.async_update_service(info)
                await announced
            except (ZeroconfError, OSError) as exc:
                raise MdnsError(f"mDNS update failed: {exc!r}") from exc
            self._info = info

    async def stop(self) -> None:
        """Withdraw the service (goodbye packets, ~0.3 s) and close the sockets.

        Does nothing when not running.
        """
        async with self._lock:
            azc, info = self._azc, self._info
            self._azc, self._info, self._addresses = None, None, []
            if azc is None:
                return
            try:
                if info is not None:
                    goodbyes = await azc.async_unregister_service(info)
                    await goodbyes
            finally:
                await azc.async_close()


# --------------------------------------------------------------------------- browser


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
    azc = _open_zeroconf(interfaces)
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
