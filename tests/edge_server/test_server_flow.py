"""The whole flow against a real server on 127.0.0.1 with the tiny demo bundle."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.edge_server.conftest import LiveServer, photo

pytestmark = pytest.mark.slow


def upload(client: httpx.Client, photos: list[bytes], metadata: dict[str, Any]) -> httpx.Response:
    files = [("metadata", (None, json.dumps(metadata), "application/json"))]
    files += [("photo", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    return client.post("/api/v1/cases", files=files)


def read_events(client: httpx.Client, case_id: str) -> list[dict[str, Any]]:
    events = []
    with client.stream("GET", f"/api/v1/cases/{case_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def wait_finished(client: httpx.Client, case_id: str, timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        body: dict[str, Any] = client.get(f"/api/v1/cases/{case_id}").json()
        if body["status"] in ("done", "failed", "rejected"):
            return body
        time.sleep(0.2)
    raise TimeoutError(case_id)


def test_pair_upload_stream_and_read_result(live_server: LiveServer) -> None:
    token = live_server.pair("ward phone")
    with live_server.client(token) as client:
        info = client.get("/api/v1/info").json()
        assert info["demo"] is True
        assert "random" in info["demo_warning"]
        response = upload(
            client,
            [photo(1), photo(2, 800, 1200)],
            {
                "age_years": 61,
                "sex": "male",
                "body_site": "back",
                "duration": "3 months",
                "symptoms": ["itch"],
                "notes": "mole changing colour and bleeding",
                "language": "en",
            },
        )
        assert response.status_code == 201, response.text
        case_id = response.json()["id"]
        events = read_events(client, case_id)
        statuses = [e["status"] for e in events if e["type"] == "status"]
        assert statuses[-1] == "done"
        tokens = [e for e in events if e["type"] == "token"]
        assert {e["pass"] for e in tokens} == {"findings", "report"}
        case = client.get(f"/api/v1/cases/{case_id}").json()
    assert case["status"] == "done"
    result = case["result"]
    assert result["assessment"]["disclaimer"].startswith("This is decision support")
    # the notes describe a changing, bleeding mole: the rules force urgent referral
    assert result["assessment"]["action"] == "urgent referral"
    assert result["red_flag_rules"]
    references = result["references"]
    assert references
    assert all(len(r["chunk_id"]) >= 20 and r["source"].endswith(".md") for r in references)
    assert all(set(r) >= {"score", "semantic", "lexical", "cosine", "cited"} for r in references)
    audit = result["audit"]
    assert audit["bundle_version"].startswith("demo-")
    assert audit["sampling"]["seed"] == 7
    assert set(audit["timings"]) >= {"findings_s", "retrieval_s", "report_s", "total_s"}
    assert audit["photos_used"] == [0, 1]
    assert "random" in result["demo_warning"]
    assert len(case["photos"]) == 2


def test_photo_download_for_the_sending_device_only(live_server: LiveServer) -> None:
    owner, other = live_server.pair("a"), live_server.pair("b")
    with live_server.client(owner) as client:
        case_id = upload(client, [photo(3)], {"language": "id"}).json()["id"]
        response = client.get(f"/api/v1/cases/{case_id}/photos/0")
        assert response.status_code == 200
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG"
        assert len(image.getexif()) == 0  # no EXIF, no GPS
        assert client.get(f"/api/v1/cases/{case_id}/photos/5").status_code == 404
    with live_server.client(other) as client:
        assert client.get(f"/api/v1/cases/{case_id}/photos/0").status_code == 403
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 200


def test_list_is_paged_newest_first(live_server: LiveServer) -> None:
    token = live_server.pair()
    with live_server.client(token) as client:
        ids = [upload(client, [photo(i)], {}).json()["id"] for i in range(3)]
        first = client.get("/api/v1/cases", params={"limit": 2}).json()
        assert [c["id"] for c in first["cases"]] == [ids[2], ids[1]]
        second = client.get(first["next"]).json()
        assert [c["id"] for c in second["cases"]] == [ids[0]]
        assert "next" not in second


def test_quality_gate_rejects_with_advice(live_server: LiveServer) -> None:
    dark = io.BytesIO()
    Image.new("RGB", (900, 700), (5, 5, 5)).save(dark, format="JPEG")
    token = live_server.pair()
    with live_server.client(token) as client:
        case_id = upload(client, [dark.getvalue()], {"language": "id"}).json()["id"]
        case = wait_finished(client, case_id)
    assert case["status"] == "rejected"
    issues = case["result"]["quality"]
    assert issues[0]["code"] == "too_dark"
    assert issues[0]["message"]  # advice to retake, in Bahasa Indonesia
    assert case["result"]["disclaimer"].startswith("Ini adalah")


def test_health_ready_metrics(live_server: LiveServer) -> None:
    with live_server.client() as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
    assert "skinspector_queue_depth" in metrics
    assert 'skinspector_cases{status="done"}' in metrics


def test_status_page_warns_about_demo(live_server: LiveServer) -> None:
    with live_server.client() as client:
        page = client.get("/status").text
        pair_page = client.get("/pair")
    assert "random text" in page
    assert pair_page.status_code == 200  # the test client is on the box itself
    assert "<svg" in pair_page.text
    assert "/app/#pair=" in pair_page.text


BROWSE = (
    "import asyncio, json, sys\n"
    "from edge_server.mdns.browser import browse\n"
    "found = asyncio.run(browse(float(sys.argv[1]), ['127.0.0.1']))\n"
    "print(json.dumps(found))\n"
)


def _browse_in_second_process(seconds: float = 3.0) -> list[dict[str, Any]]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", BROWSE, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: list[dict[str, Any]] = json.loads(out.stdout)
    return found


def test_server_is_found_by_mdns_and_withdraws(live_server_factory: Any) -> None:
    import asyncio

    server = live_server_factory(
        mdns={"enabled": True, "interfaces": ["127.0.0.1"], "instance_name": "SKINspectoR test box"}
    )
    port = int(server.url.rsplit(":", 1)[1])
    found = [s for s in _browse_in_second_process() if s["port"] == port]
    assert len(found) == 1
    txt = found[0]["properties"]
    assert txt["api"] == "1"
    assert txt["pairing"] == "required"
    assert txt["bundle"].startswith("demo-")
    assert txt["demo"] == "1"
    asyncio.run_coroutine_threadsafe(server.running.stop(), server.loop).result(60)
    assert not [s for s in _browse_in_second_process() if s["port"] == port]


def test_idempotent_upload_stores_once(live_server: LiveServer) -> None:
    """A phone that lost the 201 retries with the same Idempotency-Key: one case only."""
    token = live_server.pair()
    files = [
        ("metadata", (None, json.dumps({"notes": "retry"}), "application/json")),
        ("photo", ("p.jpg", photo(6), "image/jpeg")),
    ]
    with live_server.client(token) as client:
        first = client.post("/api/v1/cases", files=files, headers={"Idempotency-Key": "local-1"})
        again = client.post("/api/v1/cases", files=files, headers={"Idempotency-Key": "local-1"})
        other = client.post("/api/v1/cases", files=files, headers={"Idempotency-Key": "local-2"})
        bad = client.post("/api/v1/cases", files=files, headers={"Idempotency-Key": "x" * 200})
        listed = client.get("/api/v1/cases").json()["cases"]
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert bad.status_code == 400
    assert len(listed) == 2
    # another device's identical key is its own
    with live_server.client(live_server.pair("second")) as client:
        assert (
            client.post(
                "/api/v1/cases", files=files, headers={"Idempotency-Key": "local-1"}
            ).status_code
            == 201
        )


def test_app_files_must_be_revalidated(live_server: LiveServer) -> None:
    with live_server.client() as client:
        page = client.get("/")
        script = client.get("/app/app.js")
        missing = client.get("/app/../../etc/passwd")
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    assert script.status_code == 200
    assert script.headers["cache-control"] == "no-cache"
    assert missing.status_code == 404


CASE_FACTS = {"age_years": 40, "sex": "female", "body_site": "arm", "language": "en"}


def test_first_run_answers_while_the_demo_bundle_is_built(
    cache_dir: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Nothing installed, demo not built yet: the server listens at once, /readyz says what
    it prepares, uploads are stored and analysed once ready; `pair` shows the real port."""
    import threading

    from click.testing import CliRunner

    from edge_server.server import SERVER_RECORD, start_server
    from skinspector.cli import cli
    from tests.edge_server.conftest import LiveServer, server_settings
    from tests.threaded_loop import serve_in_background
    from training.demo_bundle import ensure_demo_bundle

    release = threading.Event()

    def slow_first_build(cache: Any) -> Any:  # the real build, held until the test says so
        assert release.wait(120)
        return ensure_demo_bundle(cache)

    data = tmp_path_factory.mktemp("first-run")
    settings = server_settings(data, cache_dir)
    with serve_in_background(
        lambda: start_server(settings, demo_builder=slow_first_build),
        lambda running: running.stop(),
    ) as bg:
        live = LiveServer(bg.running.url, data, settings, bg.running, bg.loop)
        with live.client() as anonymous:
            assert anonymous.get("/healthz").status_code == 200
            ready = anonymous.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["stage"].startswith("preparing the demo bundle")

        # `pair` reads the address the server records, not the settings' port 8080.
        port = bg.running.port
        paired = CliRunner().invoke(cli, ["pair", "--data-dir", str(data)])
        assert paired.exit_code == 0, paired.output
        assert f":{port}/app/#pair=" in paired.stdout

        token = live.pair()
        with live.client(token) as client:
            info = client.get("/api/v1/info").json()
            assert (info["ready"], info["demo"]) == (False, True)
            response = upload(client, [photo(3)], CASE_FACTS)
            assert response.status_code == 201, response.text
            case_id = response.json()["id"]
            assert client.get(f"/api/v1/cases/{case_id}").json()["status"] != "done"
            release.set()
            case = wait_finished(client, case_id, timeout=600)
            assert case["status"] == "done"
            assert client.get("/readyz").status_code == 200
            assert client.get("/api/v1/info").json()["bundle_version"].startswith("demo-")
        assert (data / SERVER_RECORD).is_file()
    assert not (data / SERVER_RECORD).exists()  # withdrawn at shutdown


def _serve_process(data: Any, cache_dir: Any, config: Any) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SKINSPECTOR_CACHE_DIR": str(cache_dir)}
    with (data / "serve.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "skinspector", "serve", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_url(data: Any, process: Any, timeout: float = 300) -> str:
    from edge_server.server import read_server_record

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert process.poll() is None, (data / "serve.log").read_text()
        record = read_server_record(data)
        if record is not None:
            url: str = record["url"]
            if httpx.get(f"{url}/readyz").status_code == 200:
                return url
        time.sleep(0.2)
    raise TimeoutError("server not ready")


def test_sigterm_during_an_analysis_stops_at_once_and_the_case_resumes(
    cache_dir: Any, demo_bundle: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A long pass is in flight: SIGTERM stops the server without waiting for it (the
    engine stops at the next token); the case stays "analysing" and finishes at the next
    start. (The shutdown time itself is measured by bench/bench_server.py, not asserted.)"""
    import signal

    from edge_server.devices import DeviceRegistry
    from edge_server.store import CaseStore

    data = tmp_path_factory.mktemp("sigterm")
    config = data / "edge.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\ndata_dir = "{data}"\n'
        f'bundle_dir = "{demo_bundle.root}"\n'
        "[server.mdns]\nenabled = false\n"
        "[server.analysis]\nfindings_max_tokens = 1024\nreport_max_tokens = 4096\n"
        "[engine]\nn_threads = 2\n"
    )
    process = _serve_process(data, cache_dir, config)
    try:
        url = _wait_url(data, process)
        with DeviceRegistry(data / "devices.sqlite3") as registry:
            code = registry.create_pairing_code().code
        token = httpx.post(f"{url}/api/v1/pair", json={"code": code, "device_name": "p"}).json()
        headers = {"Authorization": f"Bearer {token['token']}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            case_id = upload(client, [photo(4)], CASE_FACTS).json()["id"]
            with client.stream("GET", f"/api/v1/cases/{case_id}/events") as events:
                for line in events.iter_lines():
                    if line.startswith("data: ") and json.loads(line[6:])["type"] == "token":
                        break  # the model is generating
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0  # a hang guard, not a timing assertion
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = CaseStore(data)
    try:
        case = store.get(case_id)
        assert case is not None
        assert case.status.value == "analysing"  # cut off, not finished or failed
    finally:
        store.close()

    # Short passes at the next start, so the resumed case finishes quickly.
    config.write_text(
        config.read_text().replace("= 1024", "= 12").replace("= 4096", "= 24"), "utf-8"
    )
    again = _serve_process(data, cache_dir, config)
    try:
        url = _wait_url(data, again)
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            assert wait_finished(client, case_id, timeout=900)["status"] == "done"
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
