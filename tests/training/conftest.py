"""A real training run shared by the training and evaluation tests: synthetic SkinCAP,
the tiny Qwen2.5-VL, 24 DoRA steps, merged and exported to GGUF (built once a session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinspector.cli.main import cli
from training.config import load_config
from training.synthetic import write_synthetic_skincap
from training.trainer import train

STEPS = 24
OVERRIDES = [
    f"max_steps={STEPS}",
    "grad_accum=1",
    "log_every=4",
    "eval.every=12",
    "eval.sample_size=2",
    "eval.loss_examples=3",
    "eval.max_new_tokens=8",
    "optim.lr=1e-2",
    f"data.min_pixels={16 * 28 * 28}",
    f"data.max_pixels={64 * 28 * 28}",
]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skincap")
    # 30 photos: the 80/10/10 split gives 24 train, 3 eval, 3 test.
    write_synthetic_skincap(root, 30)
    return root


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model, dataset: Path):  # type: ignore[no-untyped-def]
    config = load_config(None, [*OVERRIDES, f"base_model={json.dumps(str(tiny_model.hf_dir))}"])
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    return train(config, dataset, run_dir, progress=False)


@pytest.fixture(scope="session")
def merged(run, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("merged") / "model"
    result = CliRunner().invoke(
        cli, ["merge", str(run.run_dir / "checkpoint-24"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def exported(merged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "q4"
    result = CliRunner().invoke(cli, ["export", str(merged), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
