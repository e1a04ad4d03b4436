"""sd_notify against a real AF_UNIX datagram socket, from a real aiohttp app."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from edge_server.box.notify import Notifier, systemd_notify_context, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def _messages(sock: socket.socket, until: float) -> list[str]:
    found = []
    sock.settimeout(0.05)
    while time.monotonic() < until:
        try:
            found.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return found


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _run_app(env: dict[str, str], sock: socket.socket, block: float = 0.0) -> list[str]:
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.cleanup_ctx.append(systemd_notify_context(env))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, _messages, sock, time.monotonic() + 0.5)
    if block:
        time.sleep(block)  # a hung event loop: no pings may arrive meanwhile
        blocked = await loop.run_in_executor(None, _messages, sock, time.monotonic() + 0.01)
        first += ["--blocked--", *blocked]
    await runner.cleanup()
    last = await loop.run_in_executor(None, _messages, sock, time.monotonic() + 0.2)
    return [*first, "--cleanup--", *last]


def test_ready_watchdog_and_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}  # ping every 0.05 s
    messages = asyncio.run(_run_app(env, sock))
    cut = messages.index("--cleanup--")
    before, after = messages[:cut], messages[cut + 1 :]
    assert any("READY=1" in m.splitlines() for m in before)
    assert "STATUS=serving" in "\n".join(before)
    assert sum(m == "WATCHDOG=1" for m in before) >= 3
    assert any("STOPPING=1" in m.splitlines() for m in after)
    assert not any(m == "WATCHDOG=1" for m in after[1:])  # the pinger stopped


def test_a_hung_loop_stops_the_watchdog_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}
    messages = asyncio.run(_run_app(env, sock, block=0.4))
    # The pings queued before the block were read; during the block none were sent
    # (at most one that was already in flight).
    start = messages.index("--blocked--")
    during = messages[start + 1 : messages.index("--cleanup--")]
    assert sum(m == "WATCHDOG=1" for m in during) <= 1


def test_abstract_namespace_socket() -> None:
    name = f"skinspector-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert Notifier(f"@{name}").ready("ok")
        assert sock.recv(4096) == b"READY=1\nSTATUS=ok"
    finally:
        sock.close()


def test_no_socket_is_a_no_op_and_a_dead_socket_is_not_fatal(tmp_path: Path) -> None:
    assert Notifier.from_environ({}).ready("x") is False
    assert Notifier(str(tmp_path / "gone.sock")).watchdog() is False


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None
    own = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(own) == 0.5
