"""Engine benchmark: engine overhead vs a bare llama-cpp-python call, image preparation of
a 12-megapixel JPEG vs a plain Pillow baseline, and peak memory.

    .venv/bin/python bench/bench_engine.py [--runs 5] [--max-tokens 32] [--model M --mmproj P]

Without --model/--mmproj it uses the tiny demo model (built and cached on first use).
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

from skinspector.core._native_log import install_native_log_filter
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.imaging import prepare_image
from skinspector.core.samples import lesion_photo
from skinspector.core.settings import EngineSettings, SamplingSettings, default_cache_dir


def timed(func: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        samples.append(time.perf_counter() - started)
    return samples


def describe(label: str, samples: list[float]) -> str:
    return (
        f"{label:<34} median {statistics.median(samples) * 1000:8.1f} ms   "
        f"min {min(samples) * 1000:8.1f} ms   max {max(samples) * 1000:8.1f} ms   "
        f"(n={len(samples)})"
    )


def naive_prepare(data: bytes) -> bytes:
    """Baseline: full-resolution decode, transpose, resize, encode (no DCT draft)."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    image = image.resize((532, 728) if image.height > image.width else (728, 532))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def phone_like_jpeg(width: int, height: int) -> bytes:
    """A synthetic photo with sensor-like noise, so the JPEG is as large as a phone's."""
    import numpy as np

    base = Image.open(io.BytesIO(lesion_photo(width, height, seed=11)))
    rng = np.random.default_rng(0)
    pixels = np.asarray(base, dtype=np.int16) + rng.integers(-24, 24, (height, width, 3))
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = base.getexif()
    exif[0x0112] = 6  # rotated, as a phone held upright writes it
    out = io.BytesIO()
    noisy.save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def prepare_peak_rss_mib(data: bytes) -> float:
    """Peak RSS (VmHWM, fresh per exec) of an interpreter that prepares ``data`` once."""
    import subprocess
    import sys
    import tempfile

    code = (
        "import sys; from pathlib import Path; "
        "from skinspector.core.imaging import prepare_image; "
        "prepare_image(Path(sys.argv[1]).read_bytes()); "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    with tempfile.NamedTemporaryFile(suffix=".jpg") as handle:
        handle.write(data)
        handle.flush()
        out = subprocess.run(
            [sys.executable, "-c", code, handle.name], capture_output=True, text=True, check=True
        )
    return int(out.stdout.strip()) / 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--mmproj", type=Path)
    args = parser.parse_args()

    # ---- image preparation of a 12 MP JPEG (4000 x 3000, phone-like quality)
    big = phone_like_jpeg(4000, 3000)
    print(f"12 MP JPEG: {len(big) / 1e6:.1f} MB, 4000x3000, EXIF orientation 6")
    ours = timed(lambda: prepare_image(big), args.runs)
    base = timed(lambda: naive_prepare(big), args.runs)
    print(describe("prepare_image (ours)", ours))
    print(describe("baseline: full decode + resize", base))
    print(f"{'speed-up vs baseline':<34} {statistics.median(base) / statistics.median(ours):.2f}x")
    print(f"peak RSS of a fresh process preparing it once: {prepare_peak_rss_mib(big):.0f} MiB")

    # ---- engine call vs bare llama-cpp-python, same model, image, prompt, sampling
    if args.model and args.mmproj:
        model_path, mmproj_path = args.model, args.mmproj
    else:
        from training.tiny_model import ensure_tiny_model

        tiny = ensure_tiny_model(default_cache_dir())
        model_path, mmproj_path = tiny.model, tiny.mmproj
    prepared = prepare_image(lesion_photo(1024, 768, seed=3))
    sampling = SamplingSettings(seed=42, max_tokens=args.max_tokens)
    settings = EngineSettings(n_ctx=4096, n_threads=args.threads, sampling=sampling)
    messages = VisionLanguageModel.messages(prepared)

    install_native_log_filter()
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    bare = Llama(
        model_path=str(model_path),
        chat_handler=Qwen25VLChatHandler(clip_model_path=str(mmproj_path), verbose=False),
        n_ctx=4096,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )

    def bare_call() -> object:
        return bare.create_chat_completion(
            messages=messages,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repeat_penalty=sampling.repeat_penalty,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
        )

    with VisionLanguageModel(model_path, mmproj_path, settings) as engine:

        def engine_call() -> object:
            return engine.generate(prepared, sampling=sampling)

        bare_call(), engine_call()  # warm-up: projector load, caches
        # Interleave the two so drift on a shared machine hits both alike.
        bare_samples: list[float] = []
        engine_samples: list[float] = []
        for _ in range(args.runs):
            bare_samples += timed(bare_call, 1)
            engine_samples += timed(engine_call, 1)
    bare.close()
    print(
        f"\nmodel: {model_path.name} + {mmproj_path.name}; "
        f"image {prepared.width}x{prepared.height}; max_tokens {args.max_tokens}; "
        f"threads {args.threads}"
    )
    print(describe("bare llama-cpp-python call", bare_samples))
    print(describe("VisionLanguageModel.generate", engine_samples))
    ratio = statistics.median(engine_samples) / statistics.median(bare_samples)
    print(f"{'engine / bare (median ratio)':<34} {ratio:.3f}")
    print(f"peak RSS (whole run): {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
