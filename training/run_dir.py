"""A training run's directory: its files, its checkpoints, resuming and the run record.

RUN_DIR/run.json           config, data, split file, features used or skipped
RUN_DIR/log.jsonl          {"step", "loss", "lr", "epoch"} every log_every steps
RUN_DIR/metrics.jsonl      {"step", "eval_loss", "metrics"} at every evaluation
RUN_DIR/checkpoint-N/      adapter, processor files, trainer_state.json,
                           training_state.pt, generations.jsonl, metrics.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skinspector.core.errors import InputError
from skinspector.core.prompt import prompt_spec
from skinspector.core.storage import write_atomic
from training.assessment_targets import SYNTHESIZED_NOTE
from training.config import TrainConfig
from training.data import LoadReport, Split
from training.model_setup import Features
from training.vlm import ASSESSMENT_PROMPT, CAPTION_PROMPT

__all__ = [
    "CHECKPOINT_PREFIX",
    "LOG_FILE",
    "METRICS_FILE",
    "RESUMABLE_CHANGES",
    "RUN_FILE",
    "STATE_FILE",
    "TENSOR_STATE_FILE",
    "RunError",
    "append_jsonl",
    "checkpoints",
    "latest_checkpoint",
    "prepare_run_dir",
    "trained_prompts",
    "truncate_jsonl",
    "write_run_record",
]

CHECKPOINT_PREFIX = "checkpoint-"
RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "trainer_state.json"
TENSOR_STATE_FILE = "training_state.pt"
#: Config sections a resumed run may change (the rest must match the checkpoint).
RESUMABLE_CHANGES = {"max_steps", "eval", "log_every", "keep_checkpoints"}


class RunError(InputError):
    """The run directory cannot be used as asked (exists, incompatible, nothing to resume)."""


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (with their trainer state), oldest first."""
    found = []
    for path in run_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX) :]
        if path.is_dir() and suffix.isdigit() and (path / STATE_FILE).is_file():
            found.append((int(suffix), path))
    return [path for _step, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records logged after ``max_step`` (a resumed run logs them again)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= max_step
    ]
    write_atomic(path, ("\n".join(kept) + "\n" if kept else "").encode())


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def prepare_run_dir(
    run_dir: Path, config: TrainConfig, resume: bool
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume from (None for a fresh run) and the stored run record."""
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        if resume and run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir} is not a training run (no {RUN_FILE})")
        return None, None
    stored = json.loads(run_file.read_text())
    if not resume:
        raise RunError(
            f"{run_dir} already holds a run: pass --resume to continue it, or a new --out"
        )
    old, new = stored["config"], config.to_json()
    changed = [key for key in config_changes(old, new) if key not in RESUMABLE_CHANGES]
    if changed:
        raise RunError(
            f"cannot resume {run_dir}: the config differs in {', '.join(changed)} "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
        )
    return latest_checkpoint(run_dir), stored


def trained_prompts(config: TrainConfig) -> dict[str, str]:
    """Name -> version of every registered prompt this run trains."""
    names = [CAPTION_PROMPT] + ([ASSESSMENT_PROMPT] if config.tasks.assessment_ratio > 0 else [])
    return {name: prompt_spec(name).version for name in names}


def write_run_record(
    run_dir: Path,
    config: TrainConfig,
    data_dir: Path,
    split_file: Path,
    split: Split,
    features: Features,
    report: LoadReport,
) -> None:
    import importlib.metadata

    versions = {}
    for dist in ("torch", "transformers", "peft", "bitsandbytes", "liger-kernel"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "absent"
    record = {
        "config": config.to_json(),
        "data_dir": str(data_dir.resolve()),
        "split_file": str(split_file.resolve()),
        "split_sha256": split.digest(),
        "duplicate_groups": len(split.duplicate_groups),
        "split_sizes": {
            "train": len(split.train),
            "eval": len(split.eval),
            "test": len(split.test),
        },
        "data_report": report.to_json(),
        "features": features.to_json(),
        "prompt": CAPTION_PROMPT,
        "prompt_version": prompt_spec(CAPTION_PROMPT).version,
        "prompts": trained_prompts(config),
        "synthesized_targets": SYNTHESIZED_NOTE if config.tasks.assessment_ratio > 0 else None,
        "versions": versions,
    }
    write_atomic(run_dir / RUN_FILE, json.dumps(record, indent=1).encode())
