"""The teledermatology loop with a real edge and a real hub on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_server.store import CaseStatus, CaseStore, NewPhoto
from edge_server.sync_wiring import case_payload, clinic_keys, save_hub_config
from skinspector.core.case_schema import ClinicalContext
from skinspector.core.samples import lesion_photo
from sync_agent.agent import SyncAgent, backoff_delay
from sync_agent.outbox import Outbox
from sync_agent.settings import SyncSettings
from tests.edge_server.conftest import photo
from tests.review_hub.hub_harness import (
    LiveHub,
    csrf_token,
    logged_in,
    queue_keys,
    running_hub,
)
from tests.sync_agent.faulty_proxy import FaultyProxy

pytestmark = pytest.mark.slow


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 2.0, 300.0, rng) for n in range(12)]
    assert all(d > 0 for d in delays)
    assert delays[5] > delays[1]
    assert max(delays) <= 300.0
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # jitter: capped, still spread


def _review(hub: LiveHub, diagnosis: str) -> None:
    with logged_in(hub) as browser:
        keys = queue_keys(browser)
        assert len(keys) == 1
        page = browser.get(f"/review/cases/{keys[0]}").text
        response = browser.post(
            f"/review/cases/{keys[0]}/review",
            data={
                "csrf": csrf_token(page),
                "diagnosis": diagnosis,
                "management": "emollients",
                "urgency": "routine referral",
                "message": "Please review in 4 weeks.",
            },
        )
        assert response.status_code == 303, response.text


def test_full_loop_edge_to_hub_and_back(tmp_path: Path, live_server_factory: Any) -> None:
    edge_dir = tmp_path / "edge"
    with running_hub(tmp_path / "hub") as hub:
        hub.add_reviewer()
        clinic = clinic_keys(edge_dir, create=True)  # `skinspector sync init`
        with hub.store() as store:  # `skinspector hub enrol-clinic`
            store.enrol_clinic(clinic.public(), "Puskesmas Sumba")
        save_hub_config(edge_dir, hub.url, hub.identity())  # `skinspector sync set-hub`
        server = live_server_factory(
            data_dir=edge_dir,
            sync={"interval_seconds": 0.3, "backoff_base_seconds": 0.1, "backoff_cap_seconds": 1.0},
        )
        server.wait_ready()
        token = server.pair()
        with server.client(token) as client:
            files = [
                (
                    "metadata",
                    (
                        None,
                        json.dumps({"notes": "itchy plaque", "language": "en"}),
                        "application/json",
                    ),
                ),
                ("photo", ("p.jpg", photo(4), "image/jpeg")),
            ]
            case_id = client.post("/api/v1/cases", files=files).json()["id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                case = client.get(f"/api/v1/cases/{case_id}").json()
                if case["sync"] and case["sync"]["state"] == "sent":
                    break
                time.sleep(0.2)
            assert case["status"] == "done"
            assert case["sync"]["state"] == "sent"
            assert hub.counts()["cases"] == 1
            _review(hub, "Nummular eczema")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                case = client.get(f"/api/v1/cases/{case_id}").json()
                if case["review"]:
                    break
                time.sleep(0.2)
        assert case["review"]["diagnosis"] == "Nummular eczema"
        assert case["review"]["case_id"] == case_id
        assert case["sync"]["state"] == "reviewed"


# ---------------------------------------------------------------- 200 cases through faults


def _stored_cases(data_dir: Path, n: int) -> CaseStore:
    store = CaseStore(data_dir)
    image = lesion_photo(64, 48, seed=1, with_gps=False)
    import hashlib

    new = NewPhoto(image, hashlib.sha256(image).hexdigest(), 64, 48)
    for i in range(n):
        case = store.create_case(ClinicalContext(notes=f"case {i}"), [new], None)
        store.set_status(
            case.id,
            CaseStatus.DONE,
            result={
                "assessment": {
                    "action": random.Random(i).choice(
                        ["self-care", "routine referral", "urgent referral"]
                    ),
                    "findings": [],
                }
            },
        )
    return store


class Harness:
    def __init__(self, data_dir: Path, hub: LiveHub, n: int) -> None:
        self.store = _stored_cases(data_dir, n)
        self.outbox = Outbox(data_dir / "cases.sqlite3", data_dir / "sync" / "outbox")
        self.outbox.enqueue_missing(self.store.case_ids())
        self.keys = clinic_keys(data_dir, create=True)
        with hub.store() as store:
            store.enrol_clinic(self.keys.public(), "Faulty clinic")
        self.agent = SyncAgent(
            self.outbox,
            self.keys,
            hub.identity(),
            SyncSettings(
                hub_url="http://127.0.0.1:1",
                interval_seconds=0.05,
                backoff_base_seconds=0.05,
                backoff_cap_seconds=0.5,
                request_timeout_seconds=5,
                batch=25,
            ),
            payload_for=lambda case_id: case_payload(self.store, case_id),
            on_review=lambda case_id, review: None,
            rng=random.Random(3),
        )

    def close(self) -> None:
        self.outbox.close()
        self.store.close()


def _run_until_empty(
    harness: Harness, proxy: FaultyProxy, timeout: float, during: Callable[[], None] | None = None
) -> None:
    """Run the agent through the proxy until the outbox is empty (``during`` runs once,
    in a thread, when 80 cases are acknowledged)."""
    agent, outbox = harness.agent, harness.outbox

    async def main() -> None:
        await proxy.start()
        agent.base_url = f"http://127.0.0.1:{proxy.port}"
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        deadline = time.monotonic() + timeout
        fired = False
        while time.monotonic() < deadline:
            counts = await asyncio.to_thread(outbox.counts)
            if during is not None and not fired and counts["sent"] >= 80:
                fired = True
                await asyncio.to_thread(during)
            if counts["queued"] == 0:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
        await proxy.stop()

    asyncio.run(main())


def _hub_case_ids(hub_dir: Path) -> list[str]:
    import sqlite3

    db = sqlite3.connect(hub_dir / "hub.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT case_id FROM cases")]
    finally:
        db.close()


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub"


def test_200_cases_through_a_faulty_network(tmp_path: Path, hub_dir: Path) -> None:
    with running_hub(hub_dir) as hub:
        proxy = FaultyProxy(hub.port, seed=11)
        harness = Harness(tmp_path / "edge", hub, 200)
        try:
            _run_until_empty(harness, proxy, timeout=300)
            counts = harness.outbox.counts()
            errors = [e.last_error for e in harness.outbox.entries() if e.state.value == "queued"]
        finally:
            harness.close()
        ids = _hub_case_ids(hub_dir)
    assert counts == {"queued": 0, "sent": 200, "reviewed": 0, "reviews_set_aside": 0}, errors
    assert len(ids) == len(set(ids)) == 200
    faults = {k: v for k, v in proxy.counts.items() if k != "pass"}
    assert sum(faults.values()) > 10, proxy.counts  # the faults really happened


def test_hub_restart_mid_sync(tmp_path: Path, hub_dir: Path) -> None:
    with contextlib.ExitStack() as stack:
        hub = stack.enter_context(running_hub(hub_dir))
        harness = Harness(tmp_path / "edge", hub, 200)
        stack.callback(harness.close)
        proxy = FaultyProxy(
            hub.port, seed=5, weights={"pass": 0.8, "drop_response": 0.1, "duplicate": 0.1}
        )
        restarted: list[LiveHub] = []

        def restart() -> None:
            asyncio.run_coroutine_threadsafe(hub.running.stop(), hub.loop).result(60)
            time.sleep(1.0)  # the hub is down for a while
            restarted.append(stack.enter_context(running_hub(hub_dir, port=hub.port)))

        _run_until_empty(harness, proxy, timeout=300, during=restart)
        counts = harness.outbox.counts()
        ids = _hub_case_ids(hub_dir)
    assert restarted, "the hub was not restarted"
    assert counts == {"queued": 0, "sent": 200, "reviewed": 0, "reviews_set_aside": 0}
    assert len(ids) == len(set(ids)) == 200


def test_sync_status_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skinspector.cli import cli

    data_dir = tmp_path / "edge"
    store = _stored_cases(data_dir, 2)
    store.close()
    runner = CliRunner()
    init = runner.invoke(cli, ["sync", "init", "--data-dir", str(data_dir)])
    assert init.exit_code == 0, init.output
    assert json.loads(init.output)["party_id"]
    status = runner.invoke(cli, ["sync", "status", "--data-dir", str(data_dir), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["hub"] is None
    not_configured = runner.invoke(cli, ["sync", "run", "--once", "--data-dir", str(data_dir)])
    assert not_configured.exit_code == 1
    assert "not configured" in not_configured.output
