"""kill -9 while 20 uploads are in flight, then restart: nothing acknowledged is lost."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from edge_server.devices import DeviceRegistry
from tests.edge_server.conftest import photo

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(data_dir: Path, port: int, cache_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SKINSPECTOR_CACHE_DIR": str(cache_dir),
        "SKINSPECTOR_ENGINE__N_CTX": "4096",
        "SKINSPECTOR_SERVER__ANALYSIS__FINDINGS_MAX_TOKENS": "24",
        "SKINSPECTOR_SERVER__ANALYSIS__REPORT_MAX_TOKENS": "48",
        "SKINSPECTOR_SERVER__QUEUE_SIZE": "64",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skinspector",
            "serve",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-mdns",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(url: str, path: str, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(path)


def test_kill_nine_during_uploads_loses_nothing_acknowledged(
    tmp_path: Path, cache_dir: Path, demo_bundle: Any
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(data_dir, port, cache_dir)
    try:
        wait_for(url, "/healthz")
        with DeviceRegistry(data_dir / "devices.sqlite3") as registry:
            code = registry.create_pairing_code().code
        token = httpx.post(
            f"{url}/api/v1/pair", json={"code": code, "device_name": "crash test"}
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        photos = [photo(seed, 2400, 1800) for seed in range(3)]
        acknowledged: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()

        def upload(n: int) -> None:
            metadata = {
                "age_years": 20 + n,
                "body_site": f"site {n}",
                "language": "en",
                "symptoms": ["itch"],
                "notes": f"upload {n}",
            }
            files = [("metadata", (None, json.dumps(metadata), "application/json"))]
            files += [("photo", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
            try:
                response = httpx.post(
                    f"{url}/api/v1/cases", files=files, headers=headers, timeout=60
                )
            except httpx.HTTPError:
                return  # the server died mid-request: not acknowledged
            if response.status_code == 201:
                with lock:
                    acknowledged[response.json()["id"]] = metadata

        threads = [threading.Thread(target=upload, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        end = time.monotonic() + 60
        while len(acknowledged) < 6 and time.monotonic() < end:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)
        server.wait()
        for thread in threads:
            thread.join()
        assert 6 <= len(acknowledged) < 20, "the kill should land while uploads are in flight"

        with sqlite3.connect(data_dir / "cases.sqlite3") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        server = start(data_dir, port, cache_dir)
        wait_for(url, "/readyz")
        with sqlite3.connect(data_dir / "cases.sqlite3") as db:
            rows = dict(db.execute("SELECT id, context FROM cases").fetchall())
            photo_rows = db.execute("SELECT case_id, file FROM photos").fetchall()
        assert set(acknowledged) <= set(rows)
        # nothing half-stored: every photo folder belongs to a case and holds its photos
        folders = {p.name for p in (data_dir / "photos").iterdir()}
        assert folders == set(rows)
        for case_id, name in photo_rows:
            assert (data_dir / "photos" / case_id / name).is_file()
        assert not list((data_dir / "photos").rglob(".*.tmp"))

        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for case_id, metadata in acknowledged.items():
                case = client.get(f"/api/v1/cases/{case_id}").json()
                for key, value in metadata.items():
                    assert case["context"][key] == value
                assert len(case["photos"]) == 3
                for index in range(3):
                    body = client.get(f"/api/v1/cases/{case_id}/photos/{index}").content
                    Image.open(io.BytesIO(body)).load()
            # unfinished analyses resume after the restart
            end = time.monotonic() + 600
            pending = set(rows)
            while pending and time.monotonic() < end:
                pending = {
                    c
                    for c in pending
                    if client.get(f"/api/v1/cases/{c}").json()["status"]
                    not in ("done", "rejected", "failed")
                }
                time.sleep(0.5)
            assert not pending
            statuses = {client.get(f"/api/v1/cases/{c}").json()["status"] for c in rows}
        assert statuses <= {"done", "rejected"}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
