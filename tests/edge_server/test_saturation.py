"""A full queue answers 503 + Retry-After at once; /healthz keeps answering meanwhile."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.edge_server.conftest import photo

pytestmark = pytest.mark.slow


def test_queue_saturation_gives_503_not_timeouts(live_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = live_server_factory(
        queue_size=2,
        analysis={"findings_max_tokens": 200, "report_max_tokens": 400, "references": 2},
    )
    server.wait_ready()
    token = server.pair()
    files = [
        ("metadata", (None, json.dumps({}), "application/json")),
        ("photo", ("p.jpg", photo(1), "image/jpeg")),
    ]
    statuses: list[int] = []
    retry_after: list[str] = []
    with server.client(token, timeout=10) as client:
        for _ in range(6):  # the client's 10 s timeout would fail the test on a hang
            response = client.post("/api/v1/cases", files=files)
            statuses.append(response.status_code)
            if response.status_code == 503:
                retry_after.append(response.headers["retry-after"])
                assert response.json()["error"]["code"] == "busy"
    assert statuses.count(201) == 2
    assert statuses.count(503) == 4
    assert all(int(value) > 0 for value in retry_after)
    # The model is busy with two long analyses: the event loop still answers
    # (bench/bench_server.py measures how fast).
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(20):
            assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").text
    assert "skinspector_rejected_busy_total 4.0" in metrics
    assert "skinspector_queue_depth 2.0" in metrics


def test_chat_is_refused_when_the_queue_is_full(live_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = live_server_factory(queue_size=1)
    server.wait_ready()
    token = server.pair()
    results: list[int] = []

    def long_chat() -> None:
        with server.client(token, timeout=120) as client:
            results.append(
                client.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 600},
                ).status_code
            )

    worker = threading.Thread(target=long_chat)
    worker.start()
    time.sleep(1.0)
    with server.client(token, timeout=10) as client:
        busy = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
    worker.join()
    assert busy.status_code == 503
    assert busy.headers["retry-after"]
    assert results == [200]
