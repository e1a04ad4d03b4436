"""Edge-server benchmark (real server on 127.0.0.1, tiny demo bundle):

1. intake: uploads per second of a 4 MB, 12 MP phone-like JPEG (validated, stripped,
   fsynced, committed), 1 and 4 concurrent clients, model deliberately not loaded so the
   number is intake alone;
2. one analysis through the server (upload, SSE until done) vs the same two passes and retrieval
   called directly on the engine and retriever (ratio);
3. /healthz latency p50/p99 while the model is busy, against the idle server.

    .venv/bin/python bench/bench_server.py [--uploads 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edge_server.analysis import retrieval_query
from edge_server.bundle import ActiveBundle
from edge_server.devices import DeviceRegistry
from edge_server.server import RunningServer, start_server
from edge_server.settings import EdgeSettings
from kb_builder.retriever import HybridRetriever
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.imaging import prepare_image
from skinspector.core.prompt import Reference, build_findings_messages, build_messages
from skinspector.core.settings import SamplingSettings, default_cache_dir
from training.demo_bundle import ensure_demo_bundle

FINDINGS_TOKENS, REPORT_TOKENS = 48, 128


def phone_jpeg() -> bytes:
    import io

    from PIL import Image

    from skinspector.core.samples import lesion_photo

    base = Image.open(io.BytesIO(lesion_photo(4000, 3000, seed=11)))
    rng = np.random.default_rng(0)
    noisy = np.clip(
        np.asarray(base, dtype=np.int16) + rng.integers(-22, 22, (3000, 4000, 3)), 0, 255
    ).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=88)
    return out.getvalue()


class Server:
    def __init__(self, settings: EdgeSettings, bundle: ActiveBundle) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        holder: dict[str, RunningServer] = {}

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def boot() -> None:
                holder["s"] = await start_server(settings, bundle)
                ready.set()

            self.loop.run_until_complete(boot())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(120)
        self.running = holder["s"]
        self.url = self.running.url
        with DeviceRegistry(settings.server.data_dir / "devices.sqlite3") as registry:
            code = registry.create_pairing_code().code
        self.token = httpx.post(
            f"{self.url}/api/v1/pair", json={"code": code, "device_name": "bench"}
        ).json()["token"]

    def wait_ready(self) -> None:
        while httpx.get(f"{self.url}/readyz").status_code != 200:
            time.sleep(0.1)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def settings_for(data_dir: Path, queue: int) -> EdgeSettings:
    return EdgeSettings(
        engine={"n_ctx": 4096, "n_threads": 2, "sampling": {"seed": 1}},
        server={
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": data_dir,
            "queue_size": queue,
            "mdns": {"enabled": False},
            "analysis": {
                "findings_max_tokens": FINDINGS_TOKENS,
                "report_max_tokens": REPORT_TOKENS,
                "references": 4,
            },
        },
    )


def upload(client: httpx.Client, data: bytes, metadata: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/api/v1/cases",
        files=[
            ("metadata", (None, json.dumps(metadata), "application/json")),
            ("photo", ("p.jpg", data, "image/jpeg")),
        ],
    )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def bench_intake(bundle: ActiveBundle, work: Path, jpeg: bytes, uploads: int) -> None:
    broken = work / "no-model-bundle"
    shutil.copytree(bundle.root, broken)
    (broken / bundle.manifest.model).write_bytes(b"not a model")  # intake only: no analysis
    server = Server(settings_for(work / "intake", 1000), ActiveBundle.open(broken))
    headers = {"Authorization": f"Bearer {server.token}"}
    print(f"intake of a {len(jpeg) / 1e6:.1f} MB 4000x3000 JPEG ({uploads} uploads each):")
    try:
        for workers in (1, 4):

            def one(_: int) -> int:
                with httpx.Client(base_url=server.url, headers=headers, timeout=120) as c:
                    return upload(c, jpeg, {"language": "en"}).status_code

            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                codes = list(pool.map(one, range(uploads)))
            seconds = time.perf_counter() - started
            assert codes.count(201) == uploads, codes
            print(
                f"  {workers} client(s): {uploads / seconds:6.2f} uploads/s "
                f"({seconds / uploads * 1000:.0f} ms each on average)"
            )
    finally:
        server.stop()


def direct_analysis(bundle: ActiveBundle, jpeg: bytes, runs: int) -> list[float]:
    vlm = VisionLanguageModel(bundle.model, bundle.mmproj, settings_for(Path("."), 1).engine)
    assert bundle.index is not None
    retriever = HybridRetriever(bundle.index)
    from skinspector.core.case_schema import ClinicalContext

    context = ClinicalContext(language="en")
    samples = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            image = prepare_image(jpeg)
            uris = [image.data_uri()]
            first = vlm.complete(
                build_findings_messages(uris, context),
                SamplingSettings(seed=1, max_tokens=FINDINGS_TOKENS),
            )
            hits = retriever.search(retrieval_query(first.text, context), 4)
            refs = [Reference(h.heading or h.title, h.text, h.source) for h in hits]
            vlm.complete(
                build_messages(uris, context, refs),
                SamplingSettings(seed=1, max_tokens=REPORT_TOKENS),
            )
            samples.append(time.perf_counter() - started)
    finally:
        vlm.close()
    return samples


def bench_analysis_and_health(bundle: ActiveBundle, work: Path, jpeg: bytes, runs: int) -> None:
    server = Server(settings_for(work / "analysis", 16), bundle)
    server.wait_ready()
    headers = {"Authorization": f"Bearer {server.token}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=300) as client:
            idle = []
            for _ in range(300):
                t = time.perf_counter()
                client.get("/healthz")
                idle.append(time.perf_counter() - t)
            through_server = []
            for _ in range(runs):
                t = time.perf_counter()
                case_id = upload(client, jpeg, {"language": "en"}).json()["id"]
                with client.stream("GET", f"/api/v1/cases/{case_id}/events") as events:
                    for _line in events.iter_lines():  # ends after the final status
                        pass
                through_server.append(time.perf_counter() - t)
            for _ in range(4):  # keep the model busy
                upload(client, jpeg, {"language": "en"})
            busy = []
            for _ in range(300):
                t = time.perf_counter()
                client.get("/healthz")
                busy.append(time.perf_counter() - t)
            metrics = client.get("/metrics").text
        in_flight = [
            line for line in metrics.splitlines() if line.startswith("skinspector_queue_depth")
        ]
    finally:
        server.stop()
    direct = direct_analysis(bundle, jpeg, runs)
    print(
        f"\none analysis ({FINDINGS_TOKENS} + {REPORT_TOKENS} tokens, 4 references), {runs} runs:"
    )
    print(f"  direct engine + retriever calls: median {statistics.median(direct):.2f} s")
    print(
        "  through the server (upload, SSE until done): "
        f"median {statistics.median(through_server):.2f} s"
    )
    print(f"  server / direct: {statistics.median(through_server) / statistics.median(direct):.3f}")
    print("\n/healthz latency (300 sequential requests):")
    print(f"  idle: p50 {pct(idle, 50):.2f} ms  p99 {pct(idle, 99):.2f} ms")
    print(
        f"  model busy ({in_flight[0] if in_flight else '?'}): p50 {pct(busy, 50):.2f} ms  "
        f"p99 {pct(busy, 99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bundle = ActiveBundle.open(ensure_demo_bundle(default_cache_dir()))
    jpeg = phone_jpeg()
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        bench_intake(bundle, work, jpeg, args.uploads)
        bench_analysis_and_health(bundle, work, jpeg, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
