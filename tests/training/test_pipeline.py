"""End to end on CPU: synthetic SkinCAP -> DoRA training -> resume -> merge -> GGUF ->
engine, with the real tiny Qwen2.5-VL, peft, bitsandbytes' Lion 8-bit and llama.cpp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinspector.cli.main import cli
from tests.training.conftest import OVERRIDES, STEPS
from training.config import load_config
from training.trainer import checkpoints, train

pytestmark = pytest.mark.slow


def _jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_directory_has_everything_later_steps_need(run, dataset: Path) -> None:  # type: ignore[no-untyped-def]
    record = json.loads((run.run_dir / "run.json").read_text())
    assert record["split_sizes"] == {"train": 24, "eval": 3, "test": 3}
    assert Path(record["split_file"]).parent == dataset.resolve()
    assert record["data_report"]["flagged"] == 1
    assert record["features"]["nf4"] is False  # CPU: the CUDA-only parts are skipped...
    assert any("Liger" in line for line in record["features"]["skipped"])  # ...and said so
    assert [path.name for path in checkpoints(run.run_dir)] == ["checkpoint-12", "checkpoint-24"]
    last = run.run_dir / "checkpoint-24"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "trainer_state.json",
        "training_state.pt",
    ):
        assert (last / name).is_file(), name
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["step"] == STEPS
    # The model carries the split it was trained with, for evaluation to check.
    assert state["split_file"] == record["split_file"]
    assert state["split_sha256"] == record["split_sha256"]
    assert state["hyperparameters"]["method"] == "dora"
    assert state["config"]["adapter"]["r"] == 16
    adapter = json.loads((last / "adapter_config.json").read_text())
    assert adapter["use_dora"] is True
    assert (adapter["r"], adapter["lora_alpha"]) == (16, 8)
    generations = _jsonl(last / "generations.jsonl")
    split = json.loads(Path(record["split_file"]).read_text())
    assert [g["id"] for g in generations] == split["eval"][:2]  # the fixed eval sample
    assert [g["seed"] for g in generations] == [42, 43]
    metrics = _jsonl(run.run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [12, 24]


def test_loss_goes_down(run) -> None:  # type: ignore[no-untyped-def]
    logged = _jsonl(run.run_dir / "log.jsonl")
    assert [entry["step"] for entry in logged] == list(range(4, STEPS + 1, 4))
    assert logged[-1]["loss"] < logged[0]["loss"] - 0.3
    evals = _jsonl(run.run_dir / "metrics.jsonl")
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]


def test_resume_continues_exactly_where_the_run_stopped(
    run,
    tiny_model,
    dataset: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    import torch
    from safetensors.torch import load_file

    # The state a run killed during step 15 leaves behind: checkpoint-12, and log lines
    # past it that the resumed run must replace.
    crashed = tmp_path / "crashed"
    shutil.copytree(run.run_dir, crashed)
    shutil.rmtree(crashed / "checkpoint-24")
    metrics = _jsonl(crashed / "metrics.jsonl")
    (crashed / "metrics.jsonl").write_text(json.dumps(metrics[0]) + "\n")
    sets = [arg for override in OVERRIDES for arg in ("--set", override)]
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data",
            str(dataset),
            "--out",
            str(crashed),
            "--resume",
            "--base-model",
            str(tiny_model.hf_dir),
            *sets,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "resuming from checkpoint-12 (step 12)" in result.output
    assert _jsonl(crashed / "log.jsonl") == [
        {**entry, "seconds": entry["seconds"]} for entry in _jsonl(crashed / "log.jsonl")
    ]
    resumed = {e["step"]: e["loss"] for e in _jsonl(crashed / "log.jsonl")}
    original = {e["step"]: e["loss"] for e in _jsonl(run.run_dir / "log.jsonl")}
    assert sorted(resumed) == sorted(original)
    for step in original:
        assert resumed[step] == pytest.approx(original[step], rel=1e-5), step
    theirs = load_file(str(run.run_dir / "checkpoint-24" / "adapter_model.safetensors"))
    ours = load_file(str(crashed / "checkpoint-24" / "adapter_model.safetensors"))
    assert theirs.keys() == ours.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6)


def test_resume_refuses_an_incompatible_config(run, dataset: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    config = load_config(
        None, [*OVERRIDES, "adapter.r=8", f"base_model={json.dumps(str(tiny_model.hf_dir))}"]
    )
    from training.trainer import RunError

    with pytest.raises(RunError, match="config differs in adapter"):
        train(config, dataset, run.run_dir, resume=True, progress=False)
    with pytest.raises(RunError, match="already holds a run"):
        train(config, dataset, run.run_dir, progress=False)


def test_merged_model_computes_what_base_plus_adapter_computes(
    run, merged: Path, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    import torch
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    ids = torch.tensor([[151644, 872, 198, 9707, 11, 1879, 13, 151645]])
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_model.hf_dir, dtype=torch.float32
    )
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        adapted = PeftModel.from_pretrained(base, str(run.run_dir / "checkpoint-24")).eval()
        expected = adapted(input_ids=ids).logits
        folded = Qwen2_5_VLForConditionalGeneration.from_pretrained(merged, dtype=torch.float32)
        got = folded(input_ids=ids).logits
    assert not torch.allclose(plain, expected, atol=1e-4)  # the adapter changed something
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    config = json.loads((merged / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    provenance = json.loads((merged / "merge.json").read_text())
    assert provenance["step"] == STEPS
    assert provenance["dtype"] == "torch.float32"  # the report merges into an FP32 base
    assert (
        provenance["split_sha256"]
        == json.loads((run.run_dir / "run.json").read_text())["split_sha256"]
    )


def test_merge_refuses_a_non_checkpoint_and_an_existing_output(run, merged: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    result = runner.invoke(cli, ["merge", str(run.run_dir), "--out", str(merged.parent / "x")])
    assert result.exit_code == 2
    assert "not a training checkpoint" in result.output
    result = runner.invoke(cli, ["merge", str(run.run_dir / "checkpoint-24"), "--out", str(merged)])
    assert result.exit_code == 2
    assert "exists and is not empty" in result.output


def test_export_writes_q4_model_f16_projector_and_manifest(exported: Path) -> None:
    from gguf import GGUFReader

    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["quant"] == "Q4_K_M"
    assert manifest["provenance"]["step"] == STEPS
    model, mmproj = exported / manifest["model"], exported / manifest["mmproj"]
    assert set(manifest["files"]) == {model.name, mmproj.name}
    assert manifest["files"][model.name]["bytes"] == model.stat().st_size
    lm_types = {t.tensor_type.name for t in GGUFReader(str(model)).tensors}
    assert "Q4_K" in lm_types
    proj_types = {t.tensor_type.name for t in GGUFReader(str(mmproj)).tensors}
    assert "F16" in proj_types
    assert not proj_types & {"Q4_K", "Q8_0", "Q5_K", "Q6_K"}


def test_exported_model_runs_in_the_engine(exported: Path) -> None:
    from skinspector.core.engine import VisionLanguageModel
    from skinspector.core.imaging import prepare_image
    from skinspector.core.samples import lesion_photo
    from skinspector.core.settings import EngineSettings, SamplingSettings
    from training.export import read_export

    model, mmproj = read_export(exported)
    with VisionLanguageModel(model, mmproj, EngineSettings(n_threads=2)) as engine:
        generation = engine.generate(
            prepare_image(lesion_photo(448, 336)), sampling=SamplingSettings(max_tokens=8, seed=1)
        )
    assert generation.completion_tokens > 0
    assert generation.text.strip()


def test_report_and_review_read_a_real_run(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(run.run_dir), "--out", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    pngs = sorted(tmp_path.joinpath("plots").glob("*.png"))
    assert len(pngs) >= 3
    assert all(png.read_bytes().startswith(b"\x89PNG") for png in pngs)
    result = runner.invoke(cli, ["review-checkpoints", str(run.run_dir), "--summary", "--json"])
    assert result.exit_code == 0, result.output
    assert "checkpoint-12" in result.output
    assert "checkpoint-24" in result.output
