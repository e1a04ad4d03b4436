"""Evaluation commands: ``compare-evals`` (quantization ablation), ``report`` (training
curves) and ``review-checkpoints`` (human review of checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from skinspector.cli._common import (
    CliError,
    CliInputError,
    ExistingFile,
    PathArg,
    translate_errors,
)

ExistingDir = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("compare-evals")
@click.argument("base_dir", type=ExistingDir)
@click.argument("other_dirs", nargs=-1, required=True, type=ExistingDir)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--n-boot",
    type=click.IntRange(10, 100_000),
    default=None,
    help="Bootstrap resamples (default: the base evaluation's, 1000).",
)
@click.option("--seed", type=click.IntRange(0), default=None, help="Bootstrap seed.")
@translate_errors
def compare_evals(
    base_dir: Path,
    other_dirs: tuple[Path, ...],
    as_json: bool,
    n_boot: int | None,
    seed: int | None,
) -> None:
    """Each metric's change against BASE_DIR, with a paired bootstrap 95% interval.

    The folders are `skinspector evaluate` outputs of the same split, e.g. the F16 export
    as the base and the Q8_0 and Q4_K_M exports as the others. Examples are paired by id;
    folders that evaluated different examples are refused.
    """
    from training.metrics import compare

    table = compare(base_dir, list(other_dirs), n_boot=n_boot, seed=seed)
    if as_json:
        click.echo(json.dumps(table.to_json(), indent=2))
    else:
        click.echo(table.render())


@click.command("report")
@click.argument("run_dir", type=ExistingDir)
@click.option(
    "--out", "out_dir", type=PathArg, default=None, help="Where to write (default RUN_DIR/report)."
)
@translate_errors
def report(run_dir: Path, out_dir: Path | None) -> None:
    """Draw a training run's curves per step as PNG files.

    Reads RUN_DIR/log.jsonl (loss, learning rate) and RUN_DIR/metrics.jsonl (periodic
    evaluations) and writes one figure per metric family (loss; ROUGE; BLEU with P1-P4,
    brevity penalty and length ratio; METEOR and BERTScore; diagnosis match), with the
    bootstrap intervals as bands, plus an overview of all panels.
    """
    from training.report import write_report

    result = write_report(run_dir, out_dir)
    for path in result.written:
        click.echo(f"wrote {path}")
    if result.skipped:
        click.echo(f"no data for: {', '.join(result.skipped)} (not drawn)")
    if result.skipped_lines:
        click.secho(f"skipped {result.skipped_lines} unreadable log lines", fg="yellow", err=True)


@click.command("review-checkpoints")
@click.argument("run_dir", type=ExistingDir)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (local only)."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8095, show_default=True)
@click.option(
    "--static-html",
    "static_html",
    type=PathArg,
    default=None,
    help="Write a self-contained HTML file (images inlined) instead of serving.",
)
@click.option(
    "--import-marks",
    "import_file",
    type=ExistingFile,
    default=None,
    help="Add the marks exported from the self-contained page, then print the summary.",
)
@click.option("--summary", is_flag=True, help="Print the per-checkpoint summary and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --summary: print JSON.")
@translate_errors
def review_checkpoints(
    run_dir: Path,
    host: str,
    port: int,
    static_html: Path | None,
    import_file: Path | None,
    summary: bool,
    as_json: bool,
) -> None:
    """Review the checkpoints' generations for the fixed evaluation images.

    Serves a local page showing, for each image, the reference caption and every
    checkpoint's generation side by side. Mark each generation as accurate, appropriately
    hedged, wrong diagnosis, hallucinated content and/or unsafe advice (plus a note); marks
    are saved to RUN_DIR/review/marks.jsonl as you make them, and the page shows a summary
    per checkpoint to help choose where to stop training.
    """
    from training.review import (
        MarkStore,
        import_marks,
        load_review_set,
        render_summary,
        summarize,
    )

    if static_html is not None and (summary or import_file is not None):
        raise CliInputError("--static-html cannot be combined with --summary or --import-marks")
    review = load_review_set(run_dir)
    if static_html is not None:
        from training.review_server import write_static_html

        path, missing = write_static_html(review, static_html)
        shape = f"{len(review.items)} images x {len(review.checkpoints)} checkpoints"
        click.echo(f"wrote {path} ({shape})")
        if missing:
            click.secho(f"{missing} images could not be read (shown as missing)", fg="yellow")
        click.echo(
            "Open it in a browser, mark the generations, press 'Export marks', then run "
            f"`skinspector review-checkpoints {run_dir} --import-marks FILE`."
        )
        return
    if import_file is not None:
        added, present = import_marks(review, import_file)
        click.echo(f"imported {added} marks ({present} already present) into {review.marks_path}")
        summary = True
    if summary:
        summaries = summarize(review, MarkStore(review.marks_path).read())
        if as_json:
            click.echo(json.dumps([s.to_json() for s in summaries], indent=2))
        else:
            click.echo(render_summary(summaries))
        return
    from training.review_server import run_review_forever

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.secho(
            f"Listening on {host}: anyone who can reach it can read the images and add marks.",
            fg="yellow",
            err=True,
        )
    try:
        run_review_forever(review, host, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
