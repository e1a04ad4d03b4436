"""``compare-evals``, ``report`` and ``review-checkpoints`` through click's runner, and the
review server as a real ``skinspector`` process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from skinspector.cli import cli
from tests.training.test_metrics import records_for, synthetic
from tests.training.test_report import make_run
from tests.training.test_review import page_token, write_generations
from training.metrics import MetricConfig, MetricSuite, score_records
from training.review import EXPORT_FORMAT, Mark, MarkStore, load_review_set


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> MetricSuite:
    return MetricSuite(MetricConfig(bertscore=False, meteor=False, n_boot=100))


@pytest.fixture
def evals(fast: MetricSuite, tmp_path: Path) -> dict[str, Path]:
    preds, refs, labels = synthetic(20, seed=5)
    short = [" ".join(p.split()[:3]) for p in preds]
    out = {}
    for name, predictions, prefix in (
        ("f16", preds, "ex"),
        ("q4_k_m", short, "ex"),
        ("other", preds, "zz"),
    ):
        records = records_for(predictions, refs, labels, prefix=prefix)
        score_records(records, suite=fast).write(tmp_path / name, records, {"model": name})
        out[name] = tmp_path / name
    return out


def test_compare_evals(evals: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["compare-evals", str(evals["f16"]), str(evals["q4_k_m"])])
    assert result.exit_code == 0, result.output
    assert "Change against f16" in result.output
    assert "Δ q4_k_m" in result.output
    assert re.search(r"ROUGE-1 +\d\.\d{4} +-0\.\d{4} \[", result.output)

    result = runner.invoke(
        cli, ["compare-evals", str(evals["f16"]), str(evals["q4_k_m"]), "--json", "--n-boot", "50"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["deltas"]["q4_k_m"]["bleu_ratio"]["delta"] < 0


def test_compare_evals_refuses_other_examples(evals: dict[str, Path]) -> None:
    result = CliRunner().invoke(cli, ["compare-evals", str(evals["f16"]), str(evals["other"])])
    assert result.exit_code == 2
    assert "bad input:" in result.output
    assert "evaluate different examples" in result.output
    assert "Traceback" not in result.output


def test_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir, MetricConfig(bertscore=False, meteor=False, n_boot=20))
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(tmp_path / "fig")])
    assert result.exit_code == 0, result.output
    written = re.findall(r"^wrote (.+\.png)$", result.output, re.MULTILINE)
    assert len(written) == 5
    assert all(Path(p).stat().st_size > 1000 for p in written)
    assert "no data for: meteor_bertscore" in result.output

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["report", str(empty)])
    assert result.exit_code == 2
    assert "not a training run folder" in result.output


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for step in (10, 20):
        rows = [
            {
                "id": f"ex{i}",
                "image": str(tmp_path / f"missing{i}.png"),
                "reference": f"ref {i}",
                "disease": "psoriasis",
                "prediction": f"gen {step}/{i}",
                "seed": i,
                "step": step,
            }
            for i in range(3)
        ]
        write_generations(run / f"checkpoint-{step}", rows)
    return run


def test_review_summary_import_and_static_html(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    store = MarkStore(run_dir / "review" / "marks.jsonl")
    store.append([Mark("checkpoint-10", "ex0", "ani", ("accurate",), "", 1.0)])
    result = runner.invoke(cli, ["review-checkpoints", str(run_dir), "--summary"])
    assert result.exit_code == 0, result.output
    assert re.search(r"checkpoint-10 +10 +1 \(3 items\) +1 \(100%\)", result.output)

    export = {
        "format": EXPORT_FORMAT,
        "version": 1,
        "marks": [
            {
                "checkpoint": "checkpoint-20",
                "id": "ex1",
                "reviewer": "budi",
                "labels": ["unsafe", "hallucinated"],
                "note": "",
                "time": 5.0,
            }
        ],
    }
    marks_file = tmp_path / "export.json"
    marks_file.write_text(json.dumps(export))
    args = ["review-checkpoints", str(run_dir), "--import-marks", str(marks_file)]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("imported 1 marks (0 already present)")
    summary = json.loads(result.output.split("\n", 1)[1])
    assert summary[1]["counts"]["unsafe"] == 1
    assert summary[1]["reviewers"] == ["budi"]

    export["marks"][0]["checkpoint"] = "checkpoint-99"  # type: ignore[index]
    marks_file.write_text(json.dumps(export))
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert "unknown checkpoint" in result.output

    html = tmp_path / "review.html"
    result = runner.invoke(cli, ["review-checkpoints", str(run_dir), "--static-html", str(html)])
    assert result.exit_code == 0, result.output
    assert "3 images x 2 checkpoints" in result.output
    assert "3 images could not be read" in result.output  # the generations name no files
    assert html.is_file()
    assert "--import-marks" in result.output

    result = runner.invoke(
        cli, ["review-checkpoints", str(run_dir), "--static-html", str(html), "--summary"]
    )
    assert result.exit_code == 2

    result = runner.invoke(cli, ["review-checkpoints", str(tmp_path), "--summary"])
    assert result.exit_code == 2
    assert "nothing to review" in result.output


def test_review_server_process(run_dir: Path) -> None:
    """``skinspector review-checkpoints RUN_DIR --port 0`` serves until SIGINT."""
    command = [sys.executable, "-m", "skinspector", "review-checkpoints", str(run_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [*command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
            assert match, line
            with httpx.Client(base_url=match.group(1)) as client:
                token = page_token(client.get("/").text)
                body = {
                    "checkpoint": "checkpoint-20",
                    "id": "ex2",
                    "reviewer": "ani",
                    "labels": ["hedged"],
                }
                answer = client.post("api/marks", json=body, headers={"X-Review-Token": token})
                assert answer.status_code == 200, answer.text
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    review = load_review_set(run_dir)
    latest = MarkStore(review.marks_path).latest()
    assert latest["checkpoint-20", "ex2", "ani"].labels == ("hedged",)
