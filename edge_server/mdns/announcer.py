"""The clinic box's mDNS / DNS-SD announcement.

Phones and tools on the clinic LAN find the server by browsing ``_skinspector._tcp.local.``
(:mod:`edge_server.mdns.browser`). :class:`MdnsAnnouncer` registers one service instance
with zeroconf's asyncio API: an SRV record pointing at a ``.local`` host name, A/AAAA
records for the announced addresses and a TXT record the server fills with versions and
flags. While zeroconf probes the instance name, the announcer runs a short multicast
("QM") browse so that a same-named service already announced on the LAN or on this
machine is in zeroconf's cache when it checks for conflicts (see
:mod:`edge_server.mdns.network` for why every query asks for multicast answers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from zeroconf import (
    BadTypeInNameException,
    DNSQuestionType,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edge_server.mdns.names import SERVICE_TYPE, default_hostname, default_instance_name
from edge_server.mdns.network import MdnsError, local_ipv4_addresses, open_zeroconf
from edge_server.mdns.settings import MdnsSettings

__all__ = ["MdnsAnnouncer"]

#: A TXT entry (``key=value``) is one length-prefixed string: 255 bytes at most.
_MAX_TXT_ENTRY = 255


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
            azc = open_zeroconf(self._settings.interfaces)
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
