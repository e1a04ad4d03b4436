"""`skinspector evaluate` with real models: the merged HF folder (transformers), GGUF
exports (llama.cpp engine), and the quantization ablation F16 vs Q8_0 vs Q4_K_M."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinspector.cli.main import cli
from training.wordnet import missing_wordnet_files

pytestmark = pytest.mark.slow

SMALL = ["--min-pixels", str(16 * 28 * 28), "--max-pixels", str(64 * 28 * 28)]
# METEOR needs Debian's WordNet (scripts/ensure-wordnet.sh); its own tests skip without it.
NO_WORDNET = ["--no-meteor"] if missing_wordnet_files() else []


def _evaluate(model: Path, data: Path, out: Path, *extra: str) -> list[dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--model", str(model), "--data", str(data), "--out", str(out),
         "--max-new-tokens", "8", "--no-bertscore", "--threads", "2", *SMALL, *NO_WORDNET,
         *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rouge" in result.output.lower()
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _eval_ids(data: Path, name: str = "test") -> list[str]:
    split = json.loads((data / "skinspector-split-seed42.json").read_text())
    return list(split[name])


def test_evaluate_a_hugging_face_folder(merged: Path, dataset: Path, tmp_path: Path) -> None:
    records = _evaluate(merged, dataset, tmp_path / "hf")
    assert [r["id"] for r in records] == _eval_ids(dataset)
    assert [r["seed"] for r in records] == [42, 43, 44]
    # A random tiny model may end its answer at once; with these seeds most do not.
    assert sum(bool(r["prediction"]) for r in records) >= 2
    assert all(r["reference"] and r["disease"] for r in records)
    metrics = json.loads((tmp_path / "hf" / "metrics.json").read_text())
    assert metrics["model_kind"] == "hf"
    csv_rows = (tmp_path / "hf" / "metrics.csv").read_text().splitlines()
    assert csv_rows[0].startswith("metric,value,ci_low,ci_high")
    assert any(row.startswith("rouge1,") for row in csv_rows)


def test_evaluate_a_gguf_export_is_reproducible(
    exported: Path, dataset: Path, tmp_path: Path
) -> None:
    first = _evaluate(exported, dataset, tmp_path / "a", "--limit", "2")
    again = _evaluate(exported, dataset, tmp_path / "b", "--limit", "2")
    assert [r["id"] for r in first] == _eval_ids(dataset)[:2]
    assert [r["prediction"] for r in first] == [r["prediction"] for r in again]
    other_seed = _evaluate(exported, dataset, tmp_path / "c", "--limit", "2", "--seed", "7")
    assert [r["prediction"] for r in other_seed] != [r["prediction"] for r in first]


def test_evaluate_rejects_what_is_not_a_model(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--model", str(tmp_path / "empty"), "--data", str(dataset),
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "neither a Hugging Face model folder" in result.output


def test_quantization_ablation_against_f16(
    merged: Path, exported: Path, dataset: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    eval_dirs = {}
    for quant in ("F16", "Q8_0"):
        out = tmp_path / f"gguf-{quant}"
        result = runner.invoke(cli, ["export", str(merged), "--out", str(out), "--quant", quant])
        assert result.exit_code == 0, result.output
        _evaluate(out, dataset, tmp_path / f"eval-{quant}")
        eval_dirs[quant] = tmp_path / f"eval-{quant}"
    _evaluate(exported, dataset, tmp_path / "eval-Q4_K_M")
    eval_dirs["Q4_K_M"] = tmp_path / "eval-Q4_K_M"
    result = runner.invoke(
        cli,
        ["compare-evals", str(eval_dirs["F16"]), str(eval_dirs["Q8_0"]),
         str(eval_dirs["Q4_K_M"]), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.output)
    assert comparison["base"].endswith("gguf-F16")
    assert len(comparison["others"]) == 2
    assert comparison["others"][0].endswith("gguf-Q8_0")
    text = json.dumps(comparison)
    for metric in ("rouge1", "bleu", "diagnosis_match"):
        assert f'"{metric}"' in text


def _refused(model: Path, data: Path, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--model", str(model), "--data", str(data), "--out", str(out),
         "--no-bertscore", "--no-meteor", *extra],
    )  # fmt: skip
    assert result.exit_code != 0, result.output
    assert not (out / "predictions.jsonl").exists()
    return result.output


@pytest.mark.parametrize("kind", ["checkpoint", "merged", "gguf"])
def test_evaluate_never_scores_the_models_training_examples(
    kind: str, run, merged: Path, exported: Path, dataset: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model = {"checkpoint": run.run_dir / "checkpoint-24", "merged": merged, "gguf": exported}[kind]
    output = _refused(model, dataset, tmp_path / "train", "--split", "train")
    assert "that the model was trained on" in output
    # Another split file whose test split holds training examples is refused too.
    split = json.loads((dataset / "skinspector-split-seed42.json").read_text())
    leaky = dict(split, test=split["train"][:2] + split["test"])
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    output = _refused(
        model, dataset, tmp_path / "leak", "--split-file", str(tmp_path / "leaky.json")
    )
    assert "refusing to score 2 example(s)" in output


def test_evaluate_refuses_when_the_training_split_is_gone_or_changed(
    merged: Path, dataset: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    for item in merged.iterdir():
        (copy / item.name).symlink_to(item)
    (copy / "merge.json").unlink()
    provenance = json.loads((merged / "merge.json").read_text())
    original = Path(provenance["split_file"])
    assert original.is_file()
    moved = dict(provenance, split_file=str(tmp_path / "nowhere.json"))
    (copy / "merge.json").write_text(json.dumps(moved))
    assert "is missing" in _refused(copy, dataset, tmp_path / "a")
    changed = json.loads(original.read_text())
    changed["train"], changed["eval"] = (
        changed["train"][1:],
        [*changed["eval"], changed["train"][0]],
    )
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    (copy / "merge.json").write_text(
        json.dumps(dict(provenance, split_file=str(tmp_path / "changed.json")))
    )
    assert "has changed since the model was trained" in _refused(copy, dataset, tmp_path / "b")
