"""``skinspector dev``: developer fixtures (tiny models, sample photos)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from skinspector.cli._common import PathArg, get_settings, translate_errors
from skinspector.core.samples import lesion_photo


@click.group()
def dev() -> None:
    """Developer fixtures: tiny models and synthetic sample photos."""


@dev.command("tiny-model")
@click.option(
    "--out",
    "out_dir",
    type=PathArg,
    default=None,
    help="Copy the built model here (default: only the cache).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Weight init seed.")
@click.option(
    "--preset",
    type=click.Choice(["tiny", "qwen2.5-vl-3b"]),
    default="tiny",
    show_default=True,
    help="tiny: the test/demo model; qwen2.5-vl-3b: Qwen2.5-VL-3B's exact shapes (random "
    "weights, for benchmarks; needs ~16 GB RAM, ~20 GB disk and a long time on few cores).",
)
@click.pass_context
@translate_errors
def tiny_model(ctx: click.Context, out_dir: Path | None, seed: int, preset: str) -> None:
    """Build (or reuse from the cache) a random Qwen2.5-VL and its GGUF export.

    Writes a Hugging Face folder, an f16 and a Q4_K_M language-model GGUF, an F16
    vision-projector GGUF and manifest.json. The weights are random: output is random text.
    """
    from training.tiny_model import PRESETS, ensure_tiny_model

    settings = get_settings(ctx)
    model = ensure_tiny_model(
        settings.cache_dir, PRESETS[preset](seed), progress=lambda m: click.echo(m, err=True)
    )
    root = model.root
    if out_dir is not None:
        if out_dir.exists() and any(out_dir.iterdir()):
            raise click.UsageError(f"--out {out_dir} exists and is not empty")
        shutil.copytree(model.root, out_dir, dirs_exist_ok=True)
        root = out_dir
    click.echo(json.dumps({"root": str(root), **model.manifest["files"]}, indent=2))


@dev.command("sample-photo")
@click.option("--out", "out_file", type=PathArg, required=True, help="JPEG file to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Different seeds differ.")
@click.option("--width", type=click.IntRange(28, 8000), default=1024, show_default=True)
@click.option("--height", type=click.IntRange(28, 8000), default=768, show_default=True)
def sample_photo(out_file: Path, seed: int, width: int, height: int) -> None:
    """Write a synthetic lesion photo (with EXIF incl. GPS, to show stripping)."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(lesion_photo(width, height, seed=seed))
    click.echo(str(out_file))


@dev.command("synthetic-skincap")
@click.option("--out", "out_dir", type=PathArg, required=True, help="Folder to write.")
@click.option("-n", "--count", type=click.IntRange(2, 10_000), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--size",
    type=(click.IntRange(28, 4000), click.IntRange(28, 4000)),
    default=(224, 168),
    show_default=True,
    help="Image width and height.",
)
@click.option(
    "--duplicates",
    type=click.IntRange(0, 10_000),
    default=0,
    show_default=True,
    help="Plant near-duplicate rows (resized copies, or rows naming the same original file).",
)
def synthetic_skincap(
    out_dir: Path, count: int, seed: int, size: tuple[int, int], duplicates: int
) -> None:
    """Write a synthetic dataset in SkinCAP's layout (CSV + skincap/{id}.png).

    Besides COUNT usable rows it has one row flagged "Do not consider this image" and one
    whose image is missing, as real data does. For trying the training pipeline end to end.
    """
    from training.synthetic import write_synthetic_skincap

    if (out_dir / "skincap").exists():
        raise click.UsageError(f"--out {out_dir} already holds a dataset")
    written = write_synthetic_skincap(
        out_dir, count, seed=seed, size=size, duplicates=min(duplicates, count)
    )
    click.echo(f"wrote {written.usable} usable rows (+1 flagged, +1 missing image) to {out_dir}")
    if written.duplicate_pairs:
        click.echo(f"planted {len(written.duplicate_pairs)} near-duplicates of earlier rows")
