"""``skinspector report``: curves from a synthetic run folder (log.jsonl, metrics.jsonl
with tables computed by the metrics module on synthetic captions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.evaluation_errors import EvaluationInputError
from training.metrics import MetricConfig, MetricSuite
from training.report import read_history, write_report

WORDS = [
    "red",
    "scaly",
    "plaque",
    "nodule",
    "pearly",
    "erythematous",
    "papule",
    "crust",
    "ulcer",
    "silvery",
    "elbow",
]


def captions(step: int, n: int = 12) -> tuple[list[str], list[str], list[str | None]]:
    """Predictions that get closer to the references as training goes on."""
    rng = np.random.default_rng(step)
    keep = min(0.9, 0.2 + step / 100)
    refs, preds, labels = [], [], []
    for i in range(n):
        ref = [str(w) for w in rng.choice(WORDS, size=9)]
        pred = [w if rng.random() < keep else str(rng.choice(WORDS)) for w in ref]
        label = "psoriasis" if i % 2 else "impetigo"
        if rng.random() < keep:
            pred.append(label)
        refs.append(" ".join(ref))
        preds.append(" ".join(pred))
        labels.append(label)
    return preds, refs, labels


def make_run(run_dir: Path, config: MetricConfig, *, torn: bool = False) -> None:
    run_dir.mkdir(parents=True)
    log = [
        {"step": s, "loss": 3.0 * 0.97**s, "lr": 2e-4 * (1 - s / 60), "epoch": s / 20}
        for s in range(1, 61)
    ]
    (run_dir / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    suite = MetricSuite(config)
    lines = []
    for step in (10, 20, 30, 40, 50, 60):
        table = suite.compute(*captions(step))
        lines.append({"step": step, "eval_loss": 2.5 * 0.98**step, "metrics": table.to_json()})
    text = "".join(json.dumps(row) + "\n" for row in lines)
    (run_dir / "metrics.jsonl").write_text(text + ('{"step": 70, "eval_lo' if torn else ""))
    (run_dir / "run.json").write_text(json.dumps({"config": {}, "data_dir": "x"}))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    from training.wordnet import missing_wordnet_files

    run_dir = tmp_path_factory.mktemp("report") / "run"
    config = MetricConfig(cache_dir=cache_dir, n_boot=100, meteor=not missing_wordnet_files())
    make_run(run_dir, config, torn=True)
    return run_dir


def test_report_writes_one_png_per_family(full_run: Path, tmp_path: Path) -> None:
    result = write_report(full_run, tmp_path / "figures")
    names = sorted(p.name for p in result.written)
    assert names == sorted(
        [
            "loss.png",
            "rouge.png",
            "bleu.png",
            "meteor_bertscore.png",
            "diagnosis_match.png",
            "overview.png",
        ]
    )
    assert result.skipped == []
    assert result.skipped_lines == 1  # the torn last line
    for path in result.written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(path) as image:
            assert image.width >= 600
            assert image.height >= 300
            # Not a blank canvas: plenty of distinct colours (lines, bands, text).
            assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50
    with (
        Image.open(tmp_path / "figures" / "bleu.png") as bleu,
        Image.open(tmp_path / "figures" / "rouge.png") as rouge,
    ):
        assert bleu.width > rouge.width  # two panels: BLEU + P1-P4, then BP and ratio
    assert not list((tmp_path / "figures").glob(".*tmp"))


def test_history_has_curves_with_intervals(full_run: Path) -> None:
    history = read_history(full_run)
    assert history.train_loss.steps == list(range(1, 61))
    assert history.eval_loss.steps == [10, 20, 30, 40, 50, 60]
    rouge = history.metrics["rouge1"]
    assert rouge.steps == [10, 20, 30, 40, 50, 60]
    assert all(lo <= v <= hi for lo, v, hi in zip(rouge.low, rouge.values, rouge.high, strict=True))
    assert rouge.values[-1] > rouge.values[0]  # the synthetic run improves
    assert {"bleu_p1", "bleu_p4", "bleu_bp", "bleu_ratio", "diagnosis_match"} <= set(
        history.metrics
    )


def test_families_without_data_are_skipped(tmp_path: Path, cache_dir: Path) -> None:
    run_dir = tmp_path / "run"
    config = MetricConfig(cache_dir=cache_dir, n_boot=20, bertscore=False, meteor=False)
    make_run(run_dir, config)
    result = write_report(run_dir)
    assert result.skipped == ["meteor_bertscore"]
    assert (run_dir / "report" / "rouge.png").is_file()
    assert not (run_dir / "report" / "meteor_bertscore.png").exists()


def test_loss_only_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.jsonl").write_text('{"step": 1, "loss": 2.0, "lr": 0.1, "epoch": 0.1}\n')
    result = write_report(run_dir)
    assert [p.name for p in result.written] == ["loss.png", "overview.png"]
    assert set(result.skipped) == {"rouge", "bleu", "meteor_bertscore", "diagnosis_match"}


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match=r"neither log\.jsonl nor metrics\.jsonl"):
        write_report(tmp_path)
