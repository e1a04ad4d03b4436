"""A small ``sd_notify``: readiness, status and watchdog pings to systemd.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) and,
with ``WatchdogSec=``, ``$WATCHDOG_USEC``. Each message is one AF_UNIX datagram of
``KEY=VALUE`` lines. Outside systemd (no socket) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

__all__ = ["Notifier", "systemd_notify_context", "watchdog_interval"]


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of ``$WATCHDOG_USEC`` (systemd's advice), or None.

    ``$WATCHDOG_PID``, when set, must be this process (else the watchdog is someone else's).
    """
    raw = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not raw or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


@dataclass
class Notifier:
    """Sends notifications to ``socket_path`` (None: systemd is not watching)."""

    socket_path: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    def send(self, **fields: str) -> bool:
        """One datagram ``KEY=VALUE\\n...``; False when there is nobody to tell."""
        if self.socket_path is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message.encode(), _address(self.socket_path))
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def watchdog(self) -> bool:
        return self.send(watchdog="1")

    def stopping(self) -> bool:
        return self.send(stopping="1", status="stopping")


async def _ping(notifier: Notifier, interval: float) -> None:
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def systemd_notify_context(
    environ: Mapping[str, str] | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context: READY=1 once the app has started, WATCHDOG=1 every half
    ``$WATCHDOG_USEC`` while the event loop runs (a hung loop stops the pings, and systemd
    restarts the service), STOPPING=1 on shutdown.

    Register it last, so readiness is sent after every other resource opened::

        app.cleanup_ctx.append(systemd_notify_context())
    """
    env = dict(os.environ if environ is None else environ)

    async def context(app: web.Application) -> AsyncIterator[None]:
        notifier = Notifier.from_environ(env)
        interval = watchdog_interval(env)
        task = asyncio.create_task(_ping(notifier, interval)) if interval else None
        notifier.ready("serving")
        try:
            yield
        finally:
            notifier.stopping()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return context
