"""Run an asyncio server (clinic server, hub, review page) on its own event loop in a
background thread, so that tests can drive it with ordinary synchronous clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Background(Generic[T]):
    running: T
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread


@contextmanager
def serve_in_background(
    start: Callable[[], Awaitable[T]],
    stop: Callable[[T], Awaitable[object]],
    *,
    what: str = "server",
    timeout: float = 60,
) -> Iterator[Background[T]]:
    """``start()`` on a new loop in a thread; ``stop(running)`` and a joined thread at exit.
    A start-up failure is raised in the test's thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                holder.append(await start())
            except BaseException as exc:  # surfaced in the test thread
                failure.append(exc)
            finally:
                ready.set()

        loop.run_until_complete(boot())
        if not failure:
            loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(timeout), f"{what} did not start"
    if failure:
        thread.join(10)
        loop.close()
        raise failure[0]
    try:
        yield Background(holder[0], loop, thread)
    finally:
        asyncio.run_coroutine_threadsafe(stop(holder[0]), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
