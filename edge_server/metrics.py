"""Prometheus metrics, in a registry owned by one app (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, case_counts: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "skinspector_queue_depth",
            "Analyses and chat requests admitted and not finished.",
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "skinspector_inference_seconds",
            "Model time per generation.",
            ["kind"],
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
            registry=self.registry,
        )
        self.tokens_per_second = Gauge(
            "skinspector_tokens_per_second",
            "Generation speed of the last generation.",
            ["kind"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "skinspector_rejected_busy",
            "Requests refused with 503 because the queue was full.",
            registry=self.registry,
        )
        self.cases = Gauge(
            "skinspector_cases",
            "Cases by status.",
            ["status"],
            registry=self.registry,
        )
        self._case_counts = case_counts

    def observe_generation(self, kind: str, seconds: float, tokens: int) -> None:
        self.inference_seconds.labels(kind).observe(seconds)
        if seconds > 0:
            self.tokens_per_second.labels(kind).set(tokens / seconds)

    def render(self) -> bytes:
        for status, count in self._case_counts().items():
            self.cases.labels(status).set(count)
        return generate_latest(self.registry)
