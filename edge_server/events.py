"""Per-case event fan-out for Server-Sent Events (status changes, streamed tokens)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

__all__ = ["EventHub"]


class EventHub:
    """Subscribers get their own bounded queue; a slow subscriber loses tokens, never the
    final status (the SSE handler re-reads the case from the store when the stream ends)."""

    def __init__(self, max_queued: int = 2048) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._max = max_queued

    def subscribe(self, case_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._max)
        self._subscribers[case_id].add(queue)
        return queue

    def unsubscribe(self, case_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subscribers = self._subscribers.get(case_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[case_id]

    def publish(self, case_id: str, event: dict[str, Any]) -> None:
        """Call on the event loop thread."""
        for queue in list(self._subscribers.get(case_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                if event.get("type") == "status":  # make room: status beats tokens
                    queue.get_nowait()
                    queue.put_nowait(event)
