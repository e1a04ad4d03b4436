"""Benchmark at the real model size: Qwen2.5-VL-3B's exact shapes (random weights), exported
through the project's GGUF path (Q4_K_M language model + F16 vision projector).

    .venv/bin/python bench/bench_3b.py [--threads 2] [--decode-tokens 32] [--skip-case]

Builds the model on first use (``skinspector dev tiny-model --preset qwen2.5-vl-3b``: about
8 minutes and 8 GiB of RAM on 2 cores, ~9.5 GB of disk in the cache) and reports:
image tokens and encode time of a 12 MP photo at the pixel budget; prompt and decode
tokens/s; the decode limit memory bandwidth allows (weight bytes read per token) and the
measured decode as a fraction of it; one full two-pass case through the server; peak RSS.
Random weights decode at the same speed as trained ones (same shapes, same kernels), but
their answers are random text, so pass lengths are fixed by the limits, not by the model.
Not part of ``make test``: ``make bench-3b``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edge_server.bundle import ActiveBundle
from edge_server.devices import DeviceRegistry
from edge_server.server import RunningServer, start_server
from edge_server.settings import EdgeSettings
from skinspector.core._native_log import install_native_log_filter
from skinspector.core.bundle_manifest import BundleManifest
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.imaging import prepare_image
from skinspector.core.samples import lesion_photo
from skinspector.core.settings import (
    EngineSettings,
    ImageSettings,
    SamplingSettings,
    default_cache_dir,
)
from training.demo_bundle import ensure_demo_bundle
from training.tiny_model import TinyModel, ensure_tiny_model, qwen25vl_3b_spec

GIB = 1024**3
WORDS = [
    *("skin", "lesion", "border", "colour", "diameter", "evolution", "itch", "scale"),
    *("plaque", "papule", "macule", "nodule", "erythema", "pigment", "ulcer", "crust"),
    *("forearm", "back", "scalp", "chronic", "acute", "symmetric"),
]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def memory_bandwidth_gib_s(size_bytes: int = GIB // 2, runs: int = 5) -> float:
    """Streaming copy (read + write) with numpy, best of ``runs``: a single-threaded
    estimate of what this machine's memory delivers."""
    source = np.ones(size_bytes // 8, dtype=np.float64)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return 2 * size_bytes / best / GIB


def weight_bytes_per_token(model: Path) -> tuple[int, int]:
    """(bytes of weights one decode step reads, total tensor bytes) of a GGUF model.

    Every layer's matrices are read once per token; of the token embedding table only one
    row is read, unless it is also the output projection (tied embeddings, as in the 3B
    model): then it is read whole for the logits."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(model)).tensors}
    total = sum(tensors.values())
    per_token = total
    if "output.weight" in tensors and "token_embd.weight" in tensors:
        per_token -= tensors["token_embd.weight"]  # untied: the input table is barely read
    return per_token, total


def text_prompt(tokens_wanted: int, salt: int) -> list[dict[str, Any]]:
    """A text-only prompt of roughly ``tokens_wanted`` tokens, different for each salt (so
    llama.cpp's prefix cache cannot reuse an earlier one)."""
    rng = np.random.default_rng(salt)
    words = [str(w) for w in rng.choice(WORDS, size=tokens_wanted)]
    return [{"role": "user", "content": f"{salt}: " + " ".join(words)}]


def engine_numbers(model: TinyModel, threads: int, decode_tokens: int) -> dict[str, float]:
    settings = EngineSettings(n_threads=threads, n_ctx=8192)
    numbers: dict[str, float] = {}
    started = time.perf_counter()
    with VisionLanguageModel(model.model, model.mmproj, settings) as vlm:
        numbers["load_s"] = time.perf_counter() - started
        greedy = SamplingSettings(temperature=0.0, max_tokens=1, seed=1)

        # Prompt processing (prefill) of text.
        vlm.complete(text_prompt(32, 0), greedy)  # warm-up
        rates = []
        for salt in (1, 2):
            generation = vlm.complete(text_prompt(400, salt), greedy)
            rates.append(generation.prompt_tokens / generation.seconds)
        numbers["prompt_tokens_per_s"] = statistics.median(rates)

        # A 12 MP phone photo at the pixel budget: image tokens, time to first token.
        photo = lesion_photo(4000, 3000, seed=5)
        t = time.perf_counter()
        prepared = prepare_image(photo, ImageSettings())
        numbers["prepare_s"] = time.perf_counter() - t
        numbers["image_w"], numbers["image_h"] = prepared.width, prepared.height
        image_tokens = vlm.count_image_tokens(prepared)
        numbers["image_tokens"] = image_tokens
        text = "Describe the lesion in this photo."
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": prepared.data_uri()}},
                    {"type": "text", "text": text},
                ],
            }
        ]
        with_image = vlm.complete(messages, greedy)
        numbers["image_prompt_s"] = with_image.seconds
        # The image's embeddings also go through the language model's prefill.
        text_tokens = with_image.prompt_tokens  # image positions counted as M-RoPE spans
        prefill = (image_tokens + text_tokens) / numbers["prompt_tokens_per_s"]
        numbers["image_encode_s"] = max(0.0, with_image.seconds - prefill)

        # Decode: N tokens minus 1 token on a prompt of the same length.
        one = vlm.complete(text_prompt(64, 10), greedy)
        many = vlm.complete(
            text_prompt(64, 11), SamplingSettings(temperature=0.0, max_tokens=decode_tokens)
        )
        steps = max(1, many.completion_tokens - 1)
        numbers["decode_tokens"] = many.completion_tokens
        numbers["decode_tokens_per_s"] = steps / max(1e-6, many.seconds - one.seconds)
    return numbers


class _Server:
    """The clinic server on its own event loop in a thread."""

    def __init__(self, settings: EdgeSettings, bundle: ActiveBundle) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        holder: list[RunningServer] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def boot() -> None:
                holder.append(await start_server(settings, bundle))
                started.set()

            self.loop.run_until_complete(boot())
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        if not started.wait(600):
            raise TimeoutError("the server did not start")
        self.running = holder[0]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)


def full_case(
    model: TinyModel, cache: Path, threads: int, findings: int, report: int
) -> dict[str, Any]:
    """One two-pass case (12 MP photo) through the server: upload, SSE until done."""
    demo = ensure_demo_bundle(cache)  # its knowledge-base index
    with tempfile.TemporaryDirectory(prefix="bench-3b-") as tmp:
        work = Path(tmp)
        bundle_dir = work / "bundle"
        bundle_dir.mkdir()
        for source in (model.model, model.mmproj):
            (bundle_dir / source.name).symlink_to(source)
        (bundle_dir / "index").symlink_to(demo / "index", target_is_directory=True)
        BundleManifest(
            version="3b-bench",
            model_id="qwen2.5-vl-3b-shapes-random",
            model=model.model.name,
            mmproj=model.mmproj.name,
            index="index",
        ).write(bundle_dir)
        settings = EdgeSettings(
            cache_dir=cache,
            engine={"n_ctx": 8192, "n_threads": threads},
            server={
                "host": "127.0.0.1",
                "port": 0,
                "data_dir": work / "data",
                "mdns": {"enabled": False},
                "analysis": {"findings_max_tokens": findings, "report_max_tokens": report},
            },
        )
        server = _Server(settings, ActiveBundle.open(bundle_dir))
        try:
            url = server.running.url
            end = time.monotonic() + 600
            while httpx.get(f"{url}/readyz").status_code != 200:
                if time.monotonic() > end:
                    raise TimeoutError("the model did not load")
                time.sleep(0.5)
            with DeviceRegistry(work / "data" / "devices.sqlite3") as registry:
                code = registry.create_pairing_code().code
            token = httpx.post(
                f"{url}/api/v1/pair", json={"code": code, "device_name": "bench"}
            ).json()["token"]
            photo = lesion_photo(4000, 3000, seed=6)
            files: list[tuple[str, tuple[str | None, bytes | str, str]]] = [
                ("metadata", (None, json.dumps({"language": "en"}), "application/json")),
                ("photo", ("p.jpg", photo, "image/jpeg")),
            ]
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=3600) as client:
                started = time.perf_counter()
                case_id = client.post("/api/v1/cases", files=files).json()["id"]
                with client.stream("GET", f"/api/v1/cases/{case_id}/events") as events:
                    for _line in events.iter_lines():  # ends after the final status
                        pass
                seconds = time.perf_counter() - started
                case: dict[str, Any] = client.get(f"/api/v1/cases/{case_id}").json()
        finally:
            server.stop()
    audit = (case.get("result") or {}).get("audit", {})
    return {
        "status": case["status"],
        "seconds": seconds,
        "timings": audit.get("timings", {}),
        "findings_tokens": audit.get("findings_tokens"),
        "report_tokens": audit.get("report_tokens"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--findings-max-tokens", type=int, default=160, help="server default")
    parser.add_argument("--report-max-tokens", type=int, default=640, help="server default")
    parser.add_argument("--skip-case", action="store_true", help="no full case (saves minutes)")
    args = parser.parse_args()
    install_native_log_filter()
    cache = default_cache_dir()

    t = time.perf_counter()
    model = ensure_tiny_model(cache, qwen25vl_3b_spec(), progress=print)
    print(f"model ready in {time.perf_counter() - t:.0f} s: {model.root}")
    per_token, total = weight_bytes_per_token(model.model)
    bandwidth = memory_bandwidth_gib_s()
    limit = bandwidth * GIB / per_token
    print(
        f"\nQwen2.5-VL-3B shapes, random weights: LM {model.model.stat().st_size / GIB:.2f} GiB "
        f"(Q4_K_M), mmproj {model.mmproj.stat().st_size / GIB:.2f} GiB (F16); "
        f"threads {args.threads}"
    )
    print(f"memory bandwidth (numpy copy, 1 thread): {bandwidth:.1f} GiB/s")
    print(
        f"weights read per decoded token: {per_token / GIB:.2f} GiB "
        f"(of {total / GIB:.2f} GiB of tensors) -> decode limit {limit:.1f} tokens/s"
    )

    numbers = engine_numbers(model, args.threads, args.decode_tokens)
    print(f"model load: {numbers['load_s']:.1f} s")
    print(
        f"12 MP photo -> {numbers['image_w']:.0f}x{numbers['image_h']:.0f} "
        f"(prepared in {numbers['prepare_s']:.2f} s): {numbers['image_tokens']:.0f} image tokens"
    )
    print(
        f"image prompt (encode + prefill, 1 token out): {numbers['image_prompt_s']:.1f} s; "
        f"vision encode alone (derived): {numbers['image_encode_s']:.1f} s"
    )
    print(f"prompt processing: {numbers['prompt_tokens_per_s']:.1f} tokens/s")
    decode = numbers["decode_tokens_per_s"]
    print(
        f"decode: {decode:.2f} tokens/s ({numbers['decode_tokens']:.0f} tokens) = "
        f"{decode / limit:.0%} of the bandwidth limit"
    )
    print(f"peak RSS so far: {peak_rss_gib():.2f} GiB")
    if not args.skip_case:
        case = full_case(
            model, cache, args.threads, args.findings_max_tokens, args.report_max_tokens
        )
        timings = ", ".join(f"{k} {v:.1f}" for k, v in case["timings"].items())
        print(
            f"\none two-pass case through the server ({args.findings_max_tokens} + "
            f"{args.report_max_tokens} tokens at most): {case['status']} in "
            f"{case['seconds']:.1f} s (findings {case['findings_tokens']} tokens, report "
            f"{case['report_tokens']} tokens; {timings})"
        )
    print(f"peak RSS (whole run): {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
