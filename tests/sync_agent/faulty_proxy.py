"""A fault-injecting TCP proxy for sync tests (edge -> proxy -> hub).

Per client connection it picks, with a seeded RNG, one of: pass through; refuse (close at
once); reset in the middle of the request body; deliver the request but drop the response
(a lost acknowledgement); delay; or deliver and also replay the whole request stream on a
second upstream connection (a duplicated request). Counts what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter

__all__ = ["FaultyProxy"]

FAULTS = ("pass", "refuse", "reset_mid_body", "drop_response", "delay", "duplicate")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a clean FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultyProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int = 0,
        weights: dict[str, float] | None = None,
        max_delay: float = 1.5,
    ) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.weights = weights or {
            "pass": 0.45,
            "refuse": 0.1,
            "reset_mid_body": 0.1,
            "drop_response": 0.1,
            "delay": 0.15,
            "duplicate": 0.1,
        }
        self.max_delay = max_delay
        self.counts: Counter[str] = Counter()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, cut every open connection and wait for the handlers to end."""
        if self.server is not None:
            self.server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    def _pick(self) -> str:
        names = list(self.weights)
        return self.rng.choices(names, [self.weights[n] for n in names])[0]

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._proxy(reader, writer)
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self._pick()
        self.counts[fault] += 1
        if fault == "refuse":
            _abort(writer)
            return
        upstream = await self._open_upstream()
        if upstream is None:
            _abort(writer)
            return
        up_reader, up_writer = upstream
        self._writers.add(up_writer)
        captured = bytearray()
        cut = self.rng.randint(200, 6000) if fault == "reset_mid_body" else None
        if fault == "delay":
            await asyncio.sleep(self.rng.uniform(0.2, self.max_delay))

        async def client_to_upstream() -> None:
            try:
                while data := await reader.read(65536):
                    if cut is not None and len(captured) + len(data) >= cut:
                        up_writer.write(data[: max(0, cut - len(captured))])
                        await up_writer.drain()
                        _abort(up_writer)
                        _abort(writer)
                        return
                    captured.extend(data)
                    up_writer.write(data)
                    await up_writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    if up_writer.can_write_eof():
                        up_writer.write_eof()

        async def upstream_to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    if fault == "drop_response":
                        _abort(writer)  # the hub did the work; the client never hears
                        return
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()

        try:
            await asyncio.gather(client_to_upstream(), upstream_to_client())
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()
        if fault == "duplicate" and captured:
            await self._replay(bytes(captured))

    async def _replay(self, data: bytes) -> None:
        upstream = await self._open_upstream()
        if upstream is None:
            return
        up_reader, up_writer = upstream
        self._writers.add(up_writer)
        try:
            up_writer.write(data)
            await up_writer.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(up_reader.read(65536), timeout=5)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()
