"""``skinspector report RUN_DIR``: training curves per step as PNG figures.

Reads ``RUN_DIR/log.jsonl`` (``{"step", "loss", "lr", "epoch"}`` per logged step) and
``RUN_DIR/metrics.jsonl`` (``{"step", "eval_loss", "metrics": <MetricTable JSON>}`` per
periodic evaluation) and draws one figure per metric family, each metric with its
bootstrap interval as a band, like the seed report's figures:

- ``loss.png``: training loss, evaluation loss, and the learning rate (right axis);
- ``rouge.png``: ROUGE-1, ROUGE-2, ROUGE-L;
- ``bleu.png``: BLEU with P1-P4, and a second panel with brevity penalty and length ratio;
- ``meteor_bertscore.png``: METEOR, and BERTScore P/R/F1;
- ``diagnosis_match.png``: the diagnosis top-1 and in-the-differential rates;
- ``overview.png``: all of the panels on one page.

A family without data (e.g. BERTScore switched off during training) is skipped and said
so. Figures are drawn with matplotlib's Agg canvas (no display, no global backend change)
and written atomically. A torn last line (a run killed while writing) is skipped.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinspector.core.storage import write_atomic
from training.evaluation_errors import EvaluationInputError
from training.scores import LABELS, MetricTable

__all__ = ["Curve", "ReportResult", "RunHistory", "read_history", "write_report"]

LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.jsonl"


@dataclass
class Curve:
    """One metric over steps, with its interval (NaN where unknown)."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)

    def add(self, step: int, value: float, low: float = math.nan, high: float = math.nan) -> None:
        self.steps.append(step)
        self.values.append(value)
        self.low.append(low)
        self.high.append(high)


@dataclass
class RunHistory:
    """Everything the report draws."""

    train_loss: Curve = field(default_factory=Curve)
    learning_rate: Curve = field(default_factory=Curve)
    eval_loss: Curve = field(default_factory=Curve)
    metrics: dict[str, Curve] = field(default_factory=dict)
    confidence: float = 0.95  # of the intervals, as the evaluations recorded it
    convention: str = ""  # what the metrics mean (MetricConfig.label())
    skipped_lines: int = 0


@dataclass(frozen=True)
class ReportResult:
    written: list[Path]
    skipped: list[str]  # families without data
    skipped_lines: int


def _json_lines(path: Path, history: RunHistory) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            history.skipped_lines += 1
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int | float):
            rows.append(row)
        else:
            history.skipped_lines += 1
    return sorted(rows, key=lambda row: row["step"])


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_history(run_dir: Path) -> RunHistory:
    """Read the run's logs; refuses a folder with neither file."""
    if not run_dir.is_dir():
        raise EvaluationInputError(f"run folder not found: {run_dir}")
    log_path, metrics_path = run_dir / LOG_FILE, run_dir / METRICS_FILE
    if not log_path.is_file() and not metrics_path.is_file():
        raise EvaluationInputError(
            f"{run_dir} has neither {LOG_FILE} nor {METRICS_FILE}: not a training run folder"
        )
    history = RunHistory()
    for row in _json_lines(log_path, history):
        step = int(row["step"])
        loss, lr = _number(row.get("loss")), _number(row.get("lr"))
        if loss is not None:
            history.train_loss.add(step, loss)
        if lr is not None:
            history.learning_rate.add(step, lr)
    for row in _json_lines(metrics_path, history):
        step = int(row["step"])
        eval_loss = _number(row.get("eval_loss"))
        if eval_loss is not None:
            history.eval_loss.add(step, eval_loss)
        if not isinstance(row.get("metrics"), dict):
            continue
        try:
            table = MetricTable.from_json(row["metrics"])
        except EvaluationInputError:
            history.skipped_lines += 1
            continue
        history.confidence = table.config.confidence
        history.convention = table.config.label()
        for name, value in table.metrics.items():
            history.metrics.setdefault(name, Curve()).add(
                step, value.value, value.ci_low, value.ci_high
            )
    return history


# ------------------------------------------------------------------------ drawing

#: Figure name -> panels; a panel is (title, metric names, y label).
_Panel = tuple[str, tuple[str, ...], str]
FIGURES: dict[str, tuple[_Panel, ...]] = {
    "rouge": (("ROUGE (F-measure)", ("rouge1", "rouge2", "rougeL"), "score"),),
    "bleu": (
        ("BLEU and n-gram precisions", ("bleu", "bleu_p1", "bleu_p2", "bleu_p3", "bleu_p4"), ""),
        ("BLEU brevity penalty and length ratio", ("bleu_bp", "bleu_ratio"), ""),
    ),
    "meteor_bertscore": (
        ("METEOR", ("meteor",), "score"),
        ("BERTScore", ("bertscore_p", "bertscore_r", "bertscore_f1"), "score"),
    ),
    "diagnosis_match": (("Diagnosis", ("diagnosis_top1", "diagnosis_match"), "rate"),),
}


def _draw_loss(ax: Any, history: RunHistory) -> bool:
    drawn = False
    if history.train_loss.steps:
        ax.plot(history.train_loss.steps, history.train_loss.values, label="training loss")
        drawn = True
    if history.eval_loss.steps:
        ax.plot(history.eval_loss.steps, history.eval_loss.values, "o-", label="evaluation loss")
        drawn = True
    if not drawn:
        return False
    ax.set_title("Loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if history.learning_rate.steps:
        lr_axis = ax.twinx()
        lr_axis.plot(
            history.learning_rate.steps,
            history.learning_rate.values,
            "--",
            color="grey",
            label="learning rate",
        )
        lr_axis.set_ylabel("learning rate")
        lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        lines, labels = ax.get_legend_handles_labels()
        more_lines, more_labels = lr_axis.get_legend_handles_labels()
        ax.legend(lines + more_lines, labels + more_labels, fontsize="small")
    else:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return True


def _draw_panel(ax: Any, history: RunHistory, panel: _Panel) -> bool:
    title, names, ylabel = panel
    present = [name for name in names if history.metrics.get(name, Curve()).steps]
    if not present:
        return False
    for name in present:
        curve = history.metrics[name]
        (line,) = ax.plot(curve.steps, curve.values, "o-", markersize=3, label=LABELS[name])
        if any(math.isfinite(x) for x in curve.low):
            ax.fill_between(curve.steps, curve.low, curve.high, alpha=0.2, color=line.get_color())
    ax.set_title(title)
    ax.set_xlabel("step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return True


def _save(figure: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


def write_report(run_dir: Path, out_dir: Path | None = None) -> ReportResult:
    """Draw the run's curves into ``out_dir`` (default ``RUN_DIR/report``)."""
    from matplotlib.figure import Figure

    history = read_history(run_dir)
    out_dir = out_dir or run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    coverage = round(history.confidence * 100)
    caption = f"{run_dir.name}: bands are {coverage}% bootstrap intervals"
    if history.convention:
        caption += f"\n{history.convention}"
    written: list[Path] = []
    skipped: list[str] = []
    drawable: list[tuple[str, _Panel | None]] = []

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    if _draw_loss(figure.add_subplot(), history):
        _save(figure, out_dir / "loss.png")
        written.append(out_dir / "loss.png")
        drawable.append(("loss", None))
    else:
        skipped.append("loss")
    for name, panels in FIGURES.items():
        usable = [p for p in panels if any(history.metrics.get(m) for m in p[1])]
        if not usable:
            skipped.append(name)
            continue
        figure = Figure(figsize=(7 * len(usable), 4.2), layout="constrained")
        axes = figure.subplots(1, len(usable), squeeze=False)[0]
        for ax, panel in zip(axes, usable, strict=True):
            _draw_panel(ax, history, panel)
            drawable.append((name, panel))
        figure.suptitle(caption, fontsize="small")
        _save(figure, out_dir / f"{name}.png")
        written.append(out_dir / f"{name}.png")
    if drawable:
        written.append(_overview(history, drawable, out_dir, caption))
    return ReportResult(written, skipped, history.skipped_lines)


def _overview(
    history: RunHistory, panels: Sequence[tuple[str, _Panel | None]], out_dir: Path, caption: str
) -> Path:
    from matplotlib.figure import Figure

    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6.5 * columns, 3.8 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (_, panel) in zip(axes, panels, strict=False):
        if panel is None:
            _draw_loss(ax, history)
        else:
            _draw_panel(ax, history, panel)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(caption)
    path = out_dir / "overview.png"
    _save(figure, path)
    return path
