"""mDNS announcer and browser.

Every socket here is bound to 127.0.0.1 (``interfaces=["127.0.0.1"]``): nothing is
announced on the real network. The network tests need IPv4 multicast over the loopback
interface; they probe for it at run time and skip, with the reason, where it is missing.
Service names carry a random suffix so that parallel runs do not see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_server.mdns.announcer import MdnsAnnouncer
from edge_server.mdns.browser import browse
from edge_server.mdns.names import (
    SERVICE_TYPE,
    default_hostname,
    default_instance_name,
    sanitize_dns_label,
)
from edge_server.mdns.network import MdnsError, local_ipv4_addresses
from edge_server.mdns.settings import MdnsSettings

LOOPBACK = "127.0.0.1"
WATCHER = Path(__file__).with_name("mdns_watch.py")
LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: zeroconf holds back a record it multicast less than a second ago (RFC 6762 section 14);
#: tests that need a prompt answer from a just-started announcer wait this long first.
MULTICAST_HOLDOFF_S = 1.2
EVENT_TIMEOUT_S = 8.0


# --------------------------------------------------------------------------- helpers


@functools.cache
def _loopback_multicast_problem() -> str | None:
    """Why mDNS over 127.0.0.1 cannot work here, or None when it can."""
    group = "224.0.0.251"
    try:
        with contextlib.ExitStack() as stack:
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(("", 5353))  # zeroconf shares the mDNS port the same way
            recv = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            recv.bind(("", 0))
            membership = socket.inet_aton(group) + socket.inet_aton(LOOPBACK)
            recv.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            recv.settimeout(2.0)
            send = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
            send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            send.sendto(b"skinspector-probe", (group, recv.getsockname()[1]))
            data, _ = recv.recvfrom(64)
            if data != b"skinspector-probe":
                return f"multicast probe on {LOOPBACK} received unexpected data {data!r}"
    except OSError as exc:
        return f"IPv4 multicast over {LOOPBACK} is unavailable in this sandbox: {exc!r}"
    return None


def _need_loopback_multicast() -> None:
    problem = _loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)


def _run(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(factory(), 90))


def _settings(instance: str) -> MdnsSettings:
    return MdnsSettings(
        interfaces=[LOOPBACK],
        hostname=f"skinspector-test-{uuid.uuid4().hex[:8]}",
        instance_name=instance,
    )


def _unique_instance(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


class Watcher:
    """A ``mdns_watch.py`` browser in a second process, bound to 127.0.0.1."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started = time.monotonic()

    async def event(self, timeout: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, "watcher exited early"
        event: dict[str, Any] = json.loads(line)
        return event

    async def expect(self, kind: str, timeout: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await self.event(max(deadline - time.monotonic(), 0.01))
            if event["event"] == kind:
                return event
            assert event["event"] != "timeout", event


@contextlib.asynccontextmanager
async def watcher(name: str) -> AsyncIterator[Watcher]:
    """Start a second-process browser for ``name``; wait until its sockets are open."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WATCHER),
        LOOPBACK,
        SERVICE_TYPE,
        name,
        "60",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    watch = Watcher(proc)
    try:
        ready = await watch.event(timeout=30)
        assert ready["event"] == "ready", ready
        yield watch
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the watcher exits at end of input
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            proc.kill()
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode(errors="replace")


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("clinic-box", "clinic-box"),
        ("Clínica Ñandú", "clinica-nandu"),
        ("my_box__01", "my-box-01"),
        ("--edge--", "edge"),
        ("Straße 7", "stra-e-7"),
        ("ＦＵＬＬ－ＷＩＤＴＨ", "full-width"),
    ],
)
def test_sanitize_dns_label_examples(raw: str, expected: str) -> None:
    assert sanitize_dns_label(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "診療所",
        "😀😀",
        "",
        "___",
        "a" * 200,
        "x-" * 100,
        "é" * 80,
        "box\x00\x1fname",
        "UPPER.case.DOTS",
    ],
)
def test_sanitize_dns_label_always_valid(raw: str) -> None:
    label = sanitize_dns_label(raw)
    assert LABEL_RE.fullmatch(label), label
    assert len(label) <= 63
    assert sanitize_dns_label(raw, max_length=10) == label[:10].rstrip("-")


def test_sanitize_dns_label_non_latin_names_stay_distinct() -> None:
    first, second = sanitize_dns_label("診療所"), sanitize_dns_label("病院")
    assert first.startswith("host-")
    assert first != second
    assert sanitize_dns_label("診療所") == first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("clinic-box", "skinspector-clinic-box.local."),
        ("Clinic_Box.lan.example", "skinspector-clinic-box.local."),
        ("skinspector-01", "skinspector-01.local."),
        ("SKINspector", "skinspector.local."),
    ],
)
def test_default_hostname(raw: str, expected: str) -> None:
    assert default_hostname(raw) == expected


@pytest.mark.parametrize("raw", ["a" * 300, "診療所", "_", "x_" * 40, "box.", ""])
def test_default_hostname_is_one_valid_label(raw: str) -> None:
    host = default_hostname(raw)
    label, local, root = host.split(".")
    assert (local, root) == ("local", "")
    assert LABEL_RE.fullmatch(label), label
    assert label.startswith("skinspector")


def test_default_hostname_of_this_machine() -> None:
    host = default_hostname()
    assert host.endswith(".local.")
    assert LABEL_RE.fullmatch(host.removesuffix(".local."))


def test_default_instance_name() -> None:
    assert default_instance_name("clinic-box.lan") == "SKINspectoR on clinic-box"
    assert default_instance_name("Clínica_1") == "SKINspectoR on Clínica_1"
    assert default_instance_name("") == "SKINspectoR"
    long = default_instance_name("診" * 40)
    assert len(long.encode()) <= 56
    assert long.startswith("SKINspectoR on 診")


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_normalisation() -> None:
    settings = MdnsSettings()
    assert settings.enabled is True
    assert settings.interfaces == []
    assert settings.hostname is None
    assert settings.instance_name is None
    custom = MdnsSettings(
        interfaces=[" 127.0.0.1", "127.0.0.1", "::1"],
        hostname="Clinic-Box.local",
        instance_name="  Clinic room 2 ",
    )
    assert custom.interfaces == ["127.0.0.1", "::1"]
    assert custom.hostname == "clinic-box.local."
    assert custom.instance_name == "Clinic room 2"
    assert MdnsSettings(hostname="box.local.").hostname == "box.local."
    assert MdnsSettings(hostname="box").hostname == "box.local."


@pytest.mark.parametrize(
    "fields",
    [
        {"interfaces": ["eth0"]},
        {"interfaces": ["0.0.0.0"]},
        {"interfaces": ["224.0.0.251"]},
        {"hostname": "bad_name"},
        {"hostname": "two.labels.local"},
        {"hostname": "-edge"},
        {"hostname": "a" * 64},
        {"instance_name": "   "},
        {"instance_name": "tab\there"},
        {"instance_name": "診" * 19},
        {"unknown": True},
    ],
)
def test_settings_reject_invalid(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MdnsSettings(**fields)


@pytest.mark.parametrize(
    "properties",
    [{"": "x"}, {"a=b": "x"}, {"ключ": "x"}, {"k": "v" * 300}, {"Api": "1", "api": "2"}],
)
def test_invalid_txt_record_raises(properties: dict[str, str]) -> None:
    with pytest.raises(MdnsError):
        MdnsAnnouncer(_settings("txt"), 8443, properties)


def test_invalid_port_raises() -> None:
    with pytest.raises(ValueError, match="port"):
        MdnsAnnouncer(_settings("port"), 0, {})


def test_unknown_interface_is_a_clear_error() -> None:
    settings = MdnsSettings(interfaces=["203.0.113.77"], instance_name="nowhere")
    announcer = MdnsAnnouncer(settings, 8443, {})

    async def scenario() -> None:
        with pytest.raises(MdnsError, match=r"203\.0\.113\.77"):
            await announcer.start()
        assert not announcer.running
        assert announcer.addresses == []
        await announcer.stop()

    _run(scenario)


# --------------------------------------------------------------------------- network


def test_second_process_discovers_then_sees_withdrawal() -> None:
    _need_loopback_multicast()
    instance = _unique_instance("SKINspectoR test")
    txt = {"api": "1", "server": "0.1.0", "bundle": "none", "pairing": "1", "tls": "0"}
    announcer = MdnsAnnouncer(_settings(instance), 18443, txt)

    async def scenario() -> None:
        started = time.monotonic()
        await announcer.start()
        start_s = time.monotonic() - started
        try:
            assert announcer.service_name == f"{instance}.{SERVICE_TYPE}"
            assert announcer.addresses == [LOOPBACK]
            async with watcher(announcer.service_name) as watch:
                added = await watch.expect("added")
                assert added["resolved"] is True
                assert added["port"] == 18443
                assert added["properties"] == txt
                assert added["addresses"] == [LOOPBACK]
                assert added["server"] == announcer.hostname
                await announcer.stop()
                removed = await watch.expect("removed")
                print(
                    f"\nmdns: start {start_s:.3f}s; second process found the service "
                    f"{added['t']:.3f}s after its sockets opened; saw the goodbye "
                    f"{removed['t'] - added['t']:.3f}s after that"
                )
        finally:
            await announcer.stop()
        assert not announcer.running
        # A fresh browser (this process, 127.0.0.1 only) no longer finds it.
        assert all(s["name"] != announcer.service_name for s in await browse(2.5, [LOOPBACK]))

    _run(scenario)


def test_update_changes_txt_for_running_and_new_browsers() -> None:
    _need_loopback_multicast()
    instance = _unique_instance("SKINspectoR update")
    announcer = MdnsAnnouncer(_settings(instance), 18444, {"api": "1", "bundle": "b1"})

    async def scenario() -> None:
        await announcer.start()
        try:
            async with watcher(announcer.service_name) as watch:
                added = await watch.expect("added")
                assert added["properties"] == {"api": "1", "bundle": "b1"}
                await announcer.update({"api": "1", "bundle": "b2"})
                updated = await watch.expect("updated")
                assert updated["properties"] == {"api": "1", "bundle": "b2"}
            assert announcer.properties == {"api": "1", "bundle": "b2"}
            await asyncio.sleep(MULTICAST_HOLDOFF_S)
            async with watcher(announcer.service_name) as fresh:
                seen = await fresh.expect("added")
                assert seen["properties"] == {"api": "1", "bundle": "b2"}
                print(f"\nmdns: a new browser saw the updated TXT after {seen['t']:.3f}s")
        finally:
            await announcer.stop()

    _run(scenario)


def test_start_stop_idempotent_and_restartable() -> None:
    _need_loopback_multicast()
    instance = _unique_instance("SKINspectoR idem")
    announcer = MdnsAnnouncer(_settings(instance), 18445, {"api": "1"})

    async def scenario() -> None:
        await announcer.stop()  # never started: nothing to do
        await announcer.update({"api": "2"})  # kept for start()
        await announcer.start()
        try:
            name = announcer.service_name
            await announcer.start()
            assert announcer.running
            assert announcer.service_name == name
            await asyncio.sleep(MULTICAST_HOLDOFF_S)
            found = [s for s in await browse(2.0, [LOOPBACK]) if s["name"] == name]
            assert len(found) == 1
            service = found[0]
            assert service["port"] == 18445
            assert service["host"] == announcer.hostname
            assert service["addresses"] == [LOOPBACK]
            assert service["properties"] == {"api": "2"}
        finally:
            await announcer.stop()
        await announcer.stop()
        assert not announcer.running
        assert announcer.addresses == []
        await announcer.start()
        assert announcer.running
        assert announcer.service_name == name
        await announcer.stop()
        assert not announcer.running

    _run(scenario)


def test_name_conflict_renames_or_raises() -> None:
    _need_loopback_multicast()
    instance = _unique_instance("SKINspectoR twin")
    first = MdnsAnnouncer(_settings(instance), 18446, {"api": "1"})
    strict = MdnsAnnouncer(_settings(instance), 18447, {"api": "1"}, allow_name_change=False)
    renamed = MdnsAnnouncer(_settings(instance), 18448, {"api": "1"})

    async def scenario() -> None:
        await first.start()
        try:
            await asyncio.sleep(MULTICAST_HOLDOFF_S)
            with pytest.raises(MdnsError, match="already in use"):
                await strict.start()
            assert not strict.running
            await asyncio.sleep(MULTICAST_HOLDOFF_S)
            await renamed.start()
            try:
                assert renamed.service_name == f"{instance}-2.{SERVICE_TYPE}"
                assert first.service_name == f"{instance}.{SERVICE_TYPE}"
            finally:
                await renamed.stop()
        finally:
            await first.stop()

    _run(scenario)


def test_local_ipv4_addresses_exclude_loopback() -> None:
    addresses = local_ipv4_addresses()
    assert all(not a.startswith("127.") for a in addresses)
    assert all(socket.inet_aton(a) for a in addresses)
