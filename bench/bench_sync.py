"""Sync benchmark: cases with three 3 MB photos, sealed (HPKE ML-KEM-768+X25519, Ed25519)
and acknowledged by a real hub on loopback, per second and MB/s; in the same run, the
baseline of posting the same bytes unsealed to a sink server, and sealing alone.

    .venv/bin/python bench/bench_sync.py [--cases 12]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.review_hub.hub_harness

from edge_server.store import CaseStatus, CaseStore, NewPhoto
from edge_server.sync_wiring import case_payload, clinic_keys
from skinspector.core.case_schema import ClinicalContext
from sync_agent.agent import SyncAgent
from sync_agent.envelope import seal
from sync_agent.outbox import Outbox
from sync_agent.settings import SyncSettings
from tests.review_hub.hub_harness import running_hub


def noisy_jpeg(target_bytes: int, seed: int) -> bytes:
    """A JPEG of about ``target_bytes`` (noise compresses badly, like real skin detail)."""
    rng = np.random.default_rng(seed)
    side = 1200
    while True:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=85)
        if out.tell() >= target_bytes:
            return out.getvalue()
        side = int(side * 1.15)


async def sink_baseline(payloads: list[bytes]) -> float:
    async def sink(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/sink", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for payload in payloads:
            async with s.post(f"http://127.0.0.1:{port}/sink", data=payload) as r:
                await r.read()
    seconds = time.perf_counter() - started
    await runner.cleanup()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        photos = [noisy_jpeg(3_000_000, seed) for seed in range(3)]
        store = CaseStore(work / "edge")
        new = [NewPhoto(p, hashlib.sha256(p).hexdigest(), 1, 1) for p in photos]
        for i in range(args.cases):
            case = store.create_case(ClinicalContext(notes=f"bench {i}"), new, None)
            store.set_status(
                case.id,
                CaseStatus.DONE,
                result={"assessment": {"action": "routine referral", "findings": []}},
            )
        payloads = [p for p in (case_payload(store, c) for c in store.case_ids()) if p]
        mb = sum(len(p) for p in payloads) / 1e6
        print(
            f"{args.cases} cases, 3 photos of {len(photos[0]) / 1e6:.1f} MB each; "
            f"payload {mb / args.cases:.1f} MB per case (base64 JSON)"
        )
        keys = clinic_keys(work / "edge", create=True)
        outbox = Outbox(work / "edge" / "cases.sqlite3", work / "edge" / "sync" / "outbox")
        outbox.enqueue_missing(store.case_ids())
        with running_hub(work / "hub") as hub:
            with hub.store() as hub_store:
                hub_store.enrol_clinic(keys.public(), "bench clinic")
            hub_identity = hub.identity()
            started = time.perf_counter()
            for payload in payloads:
                seal(
                    payload,
                    kind="case",
                    sender=keys,
                    recipient=hub_identity,
                    envelope_id="x" * 32,
                    created_at=time.time(),
                )
            seal_s = time.perf_counter() - started
            agent = SyncAgent(
                outbox,
                keys,
                hub_identity,
                SyncSettings(hub_url=hub.url, batch=1000),
                payload_for=lambda c: case_payload(store, c),
                on_review=lambda c, r: None,
                rng=random.Random(0),
            )
            started = time.perf_counter()
            report = asyncio.run(agent.sync_once())
            sync_s = time.perf_counter() - started
            assert report.sent == args.cases, report
            assert hub.counts()["cases"] == args.cases
        baseline_s = asyncio.run(sink_baseline(payloads))
        outbox.close()
        store.close()
        print(f"{'sealing alone':<44} {args.cases / seal_s:7.2f} cases/s {mb / seal_s:8.1f} MB/s")
        print(
            f"{'sealed + sent + verified + stored + acked':<44} {args.cases / sync_s:7.2f} "
            f"cases/s {mb / sync_s:8.1f} MB/s"
        )
        print(
            f"{'baseline: same bytes POSTed to a sink':<44} {args.cases / baseline_s:7.2f} "
            f"cases/s {mb / baseline_s:8.1f} MB/s"
        )
        print(json.dumps({"sync_over_baseline": round(sync_s / baseline_s, 2)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
