"""``skinspector describe``: one photo in, one structured assessment out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from skinspector.cli._common import CliError, ExistingFile, get_settings, translate_errors
from skinspector.core.case_schema import Assessment, ClinicalContext, Language, Sex
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.imaging import prepare_image
from skinspector.core.settings import Settings

DEMO_WARNING = (
    "Using the built-in DEMO model: random weights, its output is random text and means "
    "nothing. Pass --model and --mmproj for a real model."
)


def resolve_model(settings: Settings, model: Path | None, mmproj: Path | None) -> tuple[Path, Path]:
    """Explicit files, configured files, or the demo model (built on first use)."""
    if (model is None) != (mmproj is None):
        raise click.UsageError("--model and --mmproj go together")
    if model is not None and mmproj is not None:
        return model, mmproj
    engine = settings.engine
    if engine.model_path is not None and engine.mmproj_path is not None:
        return engine.model_path, engine.mmproj_path
    try:
        from training.tiny_model import ensure_tiny_model
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise CliError(
            "no model configured and the demo model cannot be built without the 'train' "
            "extra; pass --model and --mmproj"
        ) from exc
    click.secho(DEMO_WARNING, fg="yellow", err=True)
    tiny = ensure_tiny_model(settings.cache_dir, progress=lambda m: click.echo(m, err=True))
    return tiny.model, tiny.mmproj


def render(assessment: Assessment) -> str:
    lines = ["Visible findings:"]
    lines += [f"  - {item}" for item in assessment.findings] or ["  (none stated)"]
    lines.append("Most likely conditions:")
    lines += [
        f"  - {c.name}" + (f" ({c.likelihood} likelihood)" if c.likelihood else "")
        for c in assessment.likely_conditions
    ] or ["  (none stated)"]
    lines.append("Red flags:")
    lines += [f"  - {item}" for item in assessment.red_flags] or ["  (none stated)"]
    note = "" if assessment.action_from_model else "  [model stated none: safe default]"
    lines.append(f"Recommended action: {assessment.action.value}{note}")
    lines.append(f"Disclaimer: {assessment.disclaimer}")
    return "\n".join(lines)


@click.command()
@click.argument("photo", type=ExistingFile)
@click.option("--model", type=ExistingFile, default=None, help="Language-model GGUF.")
@click.option("--mmproj", type=ExistingFile, default=None, help="Vision-projector GGUF.")
@click.option("--stream", is_flag=True, help="Print tokens as they are generated.")
@click.option("--json", "as_json", is_flag=True, help="Print the assessment as JSON.")
@click.option(
    "--language",
    type=click.Choice([lang.value for lang in Language]),
    default="en",
    show_default=True,
    help="Answer language.",
)
@click.option("--age", type=click.IntRange(0, 120), default=None, help="Age in years.")
@click.option("--sex", type=click.Choice([s.value for s in Sex]), default=None)
@click.option("--body-site", default=None, help="e.g. 'left forearm'.")
@click.option("--duration", default=None, help="e.g. '3 weeks'.")
@click.option("--symptom", "symptoms", multiple=True, help="Repeat for each symptom.")
@click.option("--notes", default=None, help="Free-text notes.")
@click.option("--seed", type=click.IntRange(0), default=None, help="Fixed sampling seed.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=None)
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=None)
@click.pass_context
@translate_errors
def describe(
    ctx: click.Context,
    photo: Path,
    model: Path | None,
    mmproj: Path | None,
    stream: bool,
    as_json: bool,
    language: str,
    age: int | None,
    sex: str | None,
    body_site: str | None,
    duration: str | None,
    symptoms: tuple[str, ...],
    notes: str | None,
    seed: int | None,
    temperature: float | None,
    max_tokens: int | None,
) -> None:
    """Describe the skin lesion in PHOTO (JPEG, PNG or WebP).

    Without --model/--mmproj it uses the configured model, else the demo model.
    """
    if stream and as_json:
        raise click.UsageError("--stream and --json cannot be combined")
    settings = get_settings(ctx)
    try:
        context = ClinicalContext(
            age_years=age,
            sex=Sex(sex) if sex else None,
            body_site=body_site,
            duration=duration,
            symptoms=list(symptoms),
            notes=notes,
            language=Language(language),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    sampling = settings.engine.sampling.model_copy(
        update={
            key: value
            for key, value in {
                "seed": seed,
                "temperature": temperature,
                "max_tokens": max_tokens,
            }.items()
            if value is not None
        }
    )
    image = prepare_image(photo.read_bytes(), settings.image)
    model_path, mmproj_path = resolve_model(settings, model, mmproj)
    with VisionLanguageModel(model_path, mmproj_path, settings.engine) as vlm:
        if stream:
            tokens = vlm.stream(image, context, sampling=sampling)
            for piece in tokens:
                click.echo(piece, nl=False)
                sys.stdout.flush()
            click.echo()
            assert tokens.result is not None
            generation = tokens.result
            assessment = generation.assessment(context.language)
            click.echo("\n--- structured ---")
            click.echo(render(assessment))
            return
        generation = vlm.generate(image, context, sampling=sampling)
    assessment = generation.assessment(context.language)
    if as_json:
        payload = {
            "assessment": assessment.model_dump(mode="json"),
            "image": {"width": image.width, "height": image.height},
            "generation": {
                "finish_reason": generation.finish_reason,
                "completion_tokens": generation.completion_tokens,
                "seconds": round(generation.seconds, 3),
            },
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        click.echo(render(assessment))
