"""Bounded admission to the model: queued + running work is capped; over the cap, callers
get an immediate refusal (HTTP 503 + Retry-After) instead of waiting forever."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Admission"]


class Admission:
    """Not thread-safe: use from the event loop only."""

    def __init__(self, capacity: int, on_change: Callable[[int], None] | None = None) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self._on_change = on_change

    def try_acquire(self) -> bool:
        if self.in_flight >= self.capacity:
            return False
        self._set(self.in_flight + 1)
        return True

    def force_acquire(self) -> None:
        """For work that must not be refused (analyses resumed after a restart)."""
        self._set(self.in_flight + 1)

    def release(self) -> None:
        self._set(max(0, self.in_flight - 1))

    def _set(self, value: int) -> None:
        self.in_flight = value
        if self._on_change is not None:
            self._on_change(value)
