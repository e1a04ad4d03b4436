"""Maintainer commands: ``data split``, ``train``, ``merge``, ``export``, ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from skinspector.cli._common import CliInputError, ExistingFile, PathArg, translate_errors

DataDir = click.Path(exists=True, file_okay=False, path_type=Path)
ModelDir = click.Path(exists=True, file_okay=False, path_type=Path)


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def data() -> None:
    """SkinCAP data: check the dataset and write the train/eval split."""


@data.command("split")
@click.option("--data", "data_dir", type=DataDir, required=True, help="SkinCAP folder.")
@click.option("--split-file", type=PathArg, default=None, help="Default: in the data folder.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--eval-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.1,
    show_default=True,
    help="Validation split (checkpoint selection).",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="Held-out test split (the reported numbers).",
)
@click.option(
    "--max-distance",
    type=click.IntRange(0, 256),
    default=None,
    help="pHash bits (of 256) under which two images are near-duplicates (default 32).",
)
@click.option("--new-split", is_flag=True, help="Replace an existing split file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@translate_errors
def split_command(
    data_dir: Path,
    split_file: Path | None,
    seed: int,
    eval_fraction: float,
    test_fraction: float,
    max_distance: int | None,
    new_split: bool,
    as_json: bool,
) -> None:
    """Load the dataset, report skipped rows, and write (or show) the split file.

    The split is deterministic (sorted ids shuffled with SEED); once written, training and
    evaluation read the file, so later runs use the same images.
    """
    from training.data import default_split_file, ensure_split, load_skincap

    examples, report = load_skincap(data_dir)
    path = split_file or default_split_file(data_dir, seed)
    if new_split and path.exists():
        path.unlink()
    split = ensure_split(
        examples,
        path,
        seed=seed,
        eval_fraction=eval_fraction,
        test_fraction=test_fraction,
        max_distance=max_distance,
        progress=not as_json,
    )
    summary = {
        "split_file": str(path),
        "usable": len(examples),
        "train": len(split.train),
        "eval": len(split.eval),
        "test": len(split.test),
        "duplicate_groups": len(split.duplicate_groups),
        "images_in_duplicate_groups": sum(len(g) for g in split.duplicate_groups),
        "report": report.to_json(),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{report.source}: {report.summary()}")
    for example_id, reason in report.skipped[:20]:
        click.echo(f"  skipped {example_id}: {reason}")
    if len(report.skipped) > 20:
        click.echo(f"  ... and {len(report.skipped) - 20} more")
    click.echo(
        f"split {path}: train {len(split.train)}, eval {len(split.eval)}, test {len(split.test)}"
    )
    click.echo(
        f"near-duplicates: {len(split.duplicate_groups)} groups "
        f"({sum(len(g) for g in split.duplicate_groups)} images), each kept in one split"
    )


@click.command("train")
@click.option(
    "--config", "config_file", type=ExistingFile, default=None, help="TOML or JSON config."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value (repeatable), e.g. --set optim.lr=1e-4.",
)
@click.option("--data", "data_dir", type=DataDir, required=True, help="SkinCAP folder.")
@click.option("--out", "run_dir", type=PathArg, required=True, help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--split-file", type=PathArg, default=None, help="Default: in the data folder.")
@click.option(
    "--base-model", default=None, help="Base model folder or hub id (overrides the config)."
)
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Overrides the config.")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@translate_errors
def train(
    config_file: Path | None,
    overrides: tuple[str, ...],
    data_dir: Path,
    run_dir: Path,
    resume: bool,
    split_file: Path | None,
    base_model: str | None,
    max_steps: int | None,
    print_config: bool,
) -> None:
    """Fine-tune Qwen2.5-VL with DoRA on SkinCAP (QDoRA + Liger on CUDA).

    Defaults are the seed report's (see `--print-config`). Evaluates every eval.every steps
    on a fixed sample of eval images with fixed seeds and saves a checkpoint there; stop
    it any time and continue with --resume.
    """
    from training.config import load_config
    from training.trainer import train as run_training

    extra = list(overrides)
    if base_model is not None:
        extra.append(f"base_model={json.dumps(base_model)}")
    if max_steps is not None:
        extra.append(f"max_steps={max_steps}")
    config = load_config(config_file, extra)
    if print_config:
        click.echo(json.dumps(config.to_json(), indent=2))
        return
    result = run_training(config, data_dir, run_dir, resume=resume, split_file=split_file, say=_say)
    last = result.checkpoints[-1].name if result.checkpoints else "none"
    click.echo(f"done: step {result.step}, last checkpoint {last}, run {run_dir}")


@click.command("merge")
@click.argument("checkpoint", type=ModelDir)
@click.option("--out", "out_dir", type=PathArg, required=True, help="Merged model folder.")
@click.option("--base-model", default=None, help="Default: the base the checkpoint was trained on.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16", "auto"]),
    default="float32",
    show_default=True,
    help="The report merges into an FP32 base; 'auto' keeps the base's stored dtype.",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
@translate_errors
def merge(
    checkpoint: Path, out_dir: Path, base_model: str | None, dtype: str, overwrite: bool
) -> None:
    """Merge a checkpoint's adapter into the full-precision base model (never the 4-bit one)."""
    from training.merge import merge_checkpoint

    _say(f"merging {checkpoint} into its full-precision base ...")
    merged = merge_checkpoint(
        checkpoint,
        out_dir,
        base_model=base_model,
        dtype=dtype,  # type: ignore[arg-type]
        overwrite=overwrite,
    )
    click.echo(f"merged model: {merged}")


@click.command("export")
@click.argument("merged", type=ModelDir)
@click.option("--out", "out_dir", type=PathArg, required=True, help="Folder for the GGUF files.")
@click.option(
    "--quant",
    type=click.Choice(["Q4_K_M", "Q5_K_M", "Q8_0", "F16"], case_sensitive=False),
    default="Q4_K_M",
    show_default=True,
    help="Language-model quantization (the projector stays F16).",
)
@click.option("--keep-f16", is_flag=True, help="Keep the intermediate f16 language model too.")
@translate_errors
def export(merged: Path, out_dir: Path, quant: str, keep_f16: bool) -> None:
    """Export a merged model to GGUF: the language model quantized, the projector in F16."""
    from training.export import EXPORT_MANIFEST, export_model

    if out_dir.exists() and any(out_dir.glob("*.gguf")):
        raise CliInputError(f"--out {out_dir} already holds GGUF files")
    _say(f"converting {merged} to GGUF ({quant.upper()}) ...")
    exported = export_model(merged, out_dir, quant, keep_f16=keep_f16)
    click.echo(
        json.dumps(
            {
                "model": str(exported.model),
                "mmproj": str(exported.mmproj),
                "manifest": str(out_dir / EXPORT_MANIFEST),
            },
            indent=2,
        )
    )


@click.command("evaluate")
@click.option(
    "--model",
    "model_dir",
    type=ModelDir,
    required=True,
    help="HF folder, training checkpoint or GGUF export folder.",
)
@click.option("--data", "data_dir", type=DataDir, required=True, help="SkinCAP folder.")
@click.option(
    "--split",
    "split_name",
    type=click.Choice(["train", "eval", "test"]),
    default="test",
    show_default=True,
    help="test: the reported numbers; eval: checkpoint selection. A model's training "
    "examples are never scored.",
)
@click.option("--split-file", type=PathArg, default=None, help="Default: in the data folder.")
@click.option("--out", "out_dir", type=PathArg, required=True, help="Evaluation output folder.")
@click.option("--limit", type=click.IntRange(1), default=None, help="First N examples only.")
@click.option("--seed", type=int, default=42, show_default=True, help="Example i uses seed+i.")
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=256, show_default=True)
@click.option(
    "--min-pixels", type=click.IntRange(4 * 28 * 28), default=256 * 28 * 28, show_default=True
)
@click.option(
    "--max-pixels", type=click.IntRange(4 * 28 * 28), default=512 * 28 * 28, show_default=True
)
@click.option(
    "--convention",
    type=click.Choice(["project", "report"]),
    default="project",
    show_default=True,
    help="report: score as the seed report did (ROUGE unstemmed, METEOR on word_tokenize "
    "tokens with punctuation, BERTScore roberta-large layer 17).",
)
@click.option("--bertscore/--no-bertscore", default=True, show_default=True)
@click.option("--meteor/--no-meteor", default=True, show_default=True, help="Needs WordNet.")
@click.option("--bertscore-model", default=None, help="Model name or path for BERTScore.")
@click.option(
    "--bertscore-layers", type=click.IntRange(1), default=None, help="Layer BERTScore reads."
)
@click.option("--threads", type=click.IntRange(1), default=None, help="llama.cpp threads (GGUF).")
@click.option(
    "--allow-prompt-mismatch",
    is_flag=True,
    help="Score a model trained on another prompt version (warns instead of refusing).",
)
@translate_errors
def evaluate(
    model_dir: Path,
    data_dir: Path,
    split_name: str,
    split_file: Path | None,
    out_dir: Path,
    limit: int | None,
    seed: int,
    max_new_tokens: int,
    min_pixels: int,
    max_pixels: int,
    convention: str,
    bertscore: bool,
    meteor: bool,
    bertscore_model: str | None,
    bertscore_layers: int | None,
    threads: int | None,
    allow_prompt_mismatch: bool,
) -> None:
    """Generate for a split with fixed seeds and score it (ROUGE, BLEU, METEOR, BERTScore,
    diagnosis match, each with a bootstrap 95% CI).

    Writes predictions.jsonl, metrics.json and metrics.csv. Evaluate F16, Q8_0 and Q4_K_M
    exports on the same split, then compare them with `skinspector compare-evals`.
    """
    from training.evaluate import evaluate_model
    from training.metrics import MetricConfig

    if min_pixels > max_pixels:
        raise CliInputError("--min-pixels must not exceed --max-pixels")
    options: dict[str, Any] = {"convention": convention, "bertscore": bertscore, "meteor": meteor}
    if bertscore_model is not None:
        options["bertscore_model"] = bertscore_model
    if bertscore_layers is not None:
        options["bertscore_layers"] = bertscore_layers
    run = evaluate_model(
        model_dir,
        data_dir,
        out_dir,
        split=split_name,
        split_file=split_file,
        limit=limit,
        seed=seed,
        max_new_tokens=max_new_tokens,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        metric_config=MetricConfig(**options),
        n_threads=threads,
        allow_prompt_mismatch=allow_prompt_mismatch,
    )
    click.echo(run.metrics.render())
    click.echo(f"wrote {out_dir}/predictions.jsonl, metrics.json, metrics.csv")
