"""GPU check of the training pipeline: NF4 (QDoRA), Liger kernels and Lion 8-bit on CUDA.

For sessions that have the GPU machine. Each configuration runs in its own process (Liger
patches transformers' modules globally, and peak memory must start from zero):

- ``tiny``: the tiny random Qwen2.5-VL, the whole pipeline (train, merge, export, engine);
- ``mid``: a random model with Qwen2.5-VL-3B's layer shapes (hidden 2048, MLP 11008,
  16/2 heads, vocabulary 151,936; vision hidden 1280, MLP 3420) and fewer layers
  (``--mid-layers``, default 4), training only.

Each is trained without Liger (the baseline) and with it; the table gives the median step
time, peak GPU memory (``torch.cuda.max_memory_allocated``) and the final loss, and the
ratio of the Liger run to the baseline. On a machine without CUDA it still runs (the tiny
model only, CUDA-only parts skipped and said so), which checks the script itself.

    python bench/bench_train_gpu.py [--steps 30] [--models tiny,mid] [--mid-layers 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MID_SPEC = {
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_heads": 16,
    "num_kv_heads": 2,
    "mrope_section": (16, 24, 24),
    "vision_hidden": 1280,
    "vision_heads": 16,
    "vision_intermediate": 3420,
    "vision_depth": 4,
    "fullatt_block_indexes": (1, 3),
}


def _model_dir(name: str, work: Path, mid_layers: int) -> Path:
    from skinspector.core.settings import default_cache_dir
    from training.tiny_model import TinyModelSpec, build_hf_model, ensure_tiny_model

    if name == "tiny":
        return ensure_tiny_model(default_cache_dir()).hf_dir
    target = work / f"mid-{mid_layers}"
    if not (target / "config.json").is_file():
        build_hf_model(TinyModelSpec(num_layers=mid_layers, **MID_SPEC), target)  # type: ignore[arg-type]
    return target


def _one(args: argparse.Namespace) -> dict[str, object]:
    """One configuration, in this process; prints a JSON line."""
    import torch

    from training.config import load_config
    from training.synthetic import write_synthetic_skincap
    from training.trainer import train

    work = Path(args.work)
    data = work / "data"
    if not (data / "skincap_v240623.csv").is_file():
        write_synthetic_skincap(data, 24, size=(448, 336))
    model_dir = _model_dir(args.model, work, args.mid_layers)
    overrides = [
        f"base_model={json.dumps(str(model_dir))}",
        f"max_steps={args.steps}",
        "grad_accum=1",
        "log_every=1",
        f"eval.every={args.steps}",
        "eval.sample_size=1",
        "eval.loss_examples=2",
        "eval.max_new_tokens=16",
        f"liger={args.liger}",
        "optim.optimizer=lion_8bit",
    ]
    if args.model == "tiny":
        overrides.append("optim.lr=1e-2")
    config = load_config(None, overrides)
    run_dir = work / f"run-{args.model}-{args.liger}"
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train(config, data, run_dir, progress=False, say=lambda m: print(m, file=sys.stderr))
    wall = time.perf_counter() - started
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    seconds = [entry["seconds"] for entry in logged]
    step_times = [b - a for a, b in itertools.pairwise(seconds)][2:]  # skip warm-up
    record: dict[str, object] = {
        "model": args.model,
        "liger": args.liger,
        "cuda": cuda,
        "features": json.loads((run_dir / "run.json").read_text())["features"],
        "step_ms": 1000 * statistics.median(step_times) if step_times else None,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "first_loss": result.losses[0][1],
        "final_loss": result.losses[-1][1],
        "wall_s": wall,
    }
    if args.model == "tiny" and args.liger == "auto":
        record.update(_rest_of_pipeline(run_dir, work))
    print("RESULT " + json.dumps(record))
    return record


def _rest_of_pipeline(run_dir: Path, work: Path) -> dict[str, object]:
    """Merge, export Q4_K_M + F16 projector, and generate with the engine."""
    from skinspector.core.engine import VisionLanguageModel
    from skinspector.core.imaging import prepare_image
    from skinspector.core.samples import lesion_photo
    from skinspector.core.settings import SamplingSettings
    from training.export import export_model
    from training.merge import merge_checkpoint
    from training.trainer import latest_checkpoint

    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    merged = merge_checkpoint(checkpoint, work / "merged", overwrite=True)
    exported = export_model(merged, work / "gguf")
    with VisionLanguageModel(exported.model, exported.mmproj) as engine:
        text = engine.generate(
            prepare_image(lesion_photo()), sampling=SamplingSettings(max_tokens=16, seed=1)
        ).text
    return {"pipeline": "train -> merge -> export -> engine ok", "engine_chars": len(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", default="tiny,mid")
    parser.add_argument("--mid-layers", type=int, default=4)
    parser.add_argument("--work", default=None, help="Working folder (default: a temp dir).")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--liger", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args)
        return

    import torch

    cuda = torch.cuda.is_available()
    models = [m for m in args.models.split(",") if m]
    if not cuda and "mid" in models:
        print("no CUDA: skipping the mid-size model (training it on CPU takes hours)")
        models = [m for m in models if m != "mid"]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-train-"))
    rows = []
    for model in models:
        for liger in ("off", "auto"):  # the baseline first
            command = [
                sys.executable, __file__, "--one", "--model", model, "--liger", liger,
                "--steps", str(args.steps), "--mid-layers", str(args.mid_layers),
                "--work", str(work),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                print(f"{model}/{liger} failed:\n{done.stderr[-3000:]}")
                continue
            rows.append(json.loads(lines[-1][len("RESULT ") :]))
    print(f"\ndevice: {torch.cuda.get_device_name(0) if cuda else 'CPU (no CUDA)'}; "
          f"{args.steps} steps, batch 1, synthetic 448x336 images")  # fmt: skip
    print(f"{'model':6} {'liger':5} {'nf4':5} {'step ms':>9} {'peak GPU MiB':>13} "
          f"{'loss first->last':>18}")  # fmt: skip
    base: dict[str, dict[str, object]] = {}
    for row in rows:
        features = row["features"]
        assert isinstance(features, dict)
        step = row["step_ms"]
        peak = row["peak_gpu_mib"]
        print(
            f"{row['model']!s:6} {features['liger']!s:5} {features['nf4']!s:5} "
            f"{step if step is None else f'{step:9.1f}'!s:>9} "
            f"{'-' if peak is None else f'{peak:13.0f}'!s:>13} "
            f"{row['first_loss']:8.3f}->{row['final_loss']:<8.3f}"
        )
        if row["liger"] == "off":
            base[str(row["model"])] = row
        elif str(row["model"]) in base and step and base[str(row["model"])]["step_ms"]:
            ref = base[str(row["model"])]
            ratio = step / float(ref["step_ms"])  # type: ignore[arg-type]
            mem = "" if peak is None else f", memory x{peak / float(ref['peak_gpu_mib']):.2f}"  # type: ignore[arg-type]
            print(f"       Liger vs baseline: step time x{ratio:.2f}{mem}")
        if "pipeline" in row:
            print(f"       {row['pipeline']}")
        if features["skipped"]:
            print(f"       skipped: {'; '.join(features['skipped'])}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
