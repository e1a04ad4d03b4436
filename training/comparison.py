"""Paired comparison of evaluations of one split: the quantization ablation.

``compare(F16_DIR, [Q8_0_DIR, Q4_K_M_DIR])`` pairs examples by id (the example sets and
their reference captions must be equal), and for each metric reports ``other - base`` with
a paired percentile bootstrap interval: each resample draws the same examples for both
evaluations, so per-example correlation is kept and BLEU is recomputed from each side's
summed statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from training.bootstrap import IndexArray, bootstrap
from training.evaluation_errors import EvaluationInputError
from training.scores import LABELS, EvalFolder, ExampleScores, read_eval_dir

__all__ = ["ComparisonTable", "MetricDelta", "compare"]


class MetricDelta(NamedTuple):
    """``other - base`` for one metric, with its paired bootstrap interval."""

    base: float
    other: float
    delta: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0


@dataclass
class ComparisonTable:
    """Each metric's change against the base evaluation, per other evaluation."""

    base: str
    others: list[str]
    deltas: dict[str, dict[str, MetricDelta]]  # other name -> metric -> delta
    n_examples: int
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "others": self.others,
            "n_examples": self.n_examples,
            "confidence": self.confidence,
            "deltas": {
                other: {name: d._asdict() for name, d in metrics.items()}
                for other, metrics in self.deltas.items()
            },
        }

    def render(self) -> str:
        pct = round(self.confidence * 100)
        names = [n for n in LABELS if any(n in m for m in self.deltas.values())]
        width = max([len(LABELS[n]) for n in names] + [6])
        cell = 34
        header = f"{'metric':<{width}}  {self.base[:12]:>12}"
        header += "".join(f"  {('Δ ' + o)[:cell]:<{cell}}" for o in self.others)
        lines = [
            f"Change against {self.base} ({self.n_examples} paired examples, "
            f"{pct}% paired bootstrap intervals; * = interval excludes 0)",
            header.rstrip(),
        ]
        for name in names:
            base_value = next(m[name].base for m in self.deltas.values() if name in m)
            row = f"{LABELS[name]:<{width}}  {base_value:>12.4f}"
            for other in self.others:
                d = self.deltas[other].get(name)
                text = "" if d is None else f"{d.delta:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
                text += "*" if d is not None and d.significant else ""
                row += f"  {text:<{cell}}"
            lines.append(row.rstrip())
        return "\n".join(lines)


def compare(
    base_dir: Path,
    other_dirs: Sequence[Path],
    *,
    n_boot: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> ComparisonTable:
    """Paired comparison of evaluations of the same split (e.g. F16 vs Q8_0, Q4_K_M).

    Examples are paired by id; the example sets (and their references) must be equal.
    Bootstrap settings default to the base evaluation's.
    """
    if not other_dirs:
        raise EvaluationInputError("nothing to compare the base evaluation with")
    base = read_eval_dir(base_dir)
    config = base.table.config
    n_boot = n_boot or config.n_boot
    seed = config.seed if seed is None else seed
    confidence = confidence or config.confidence
    base_scores = _need_scores(base)
    deltas: dict[str, dict[str, MetricDelta]] = {}
    others: list[str] = []
    for other_dir in other_dirs:
        other = read_eval_dir(other_dir)
        order = _pairing(base, other)
        if other.table.config.scoring_signature() != config.scoring_signature():
            raise EvaluationInputError(
                f"{other.path} was scored with other metric settings than {base.path}: "
                f"{other.table.config.scoring_signature()} vs {config.scoring_signature()}"
            )
        other_scores = _need_scores(other).subset(order)
        common = [n for n in base_scores.metric_names() if n in other_scores.metric_names()]
        n = len(base_scores)

        def paired(
            rows: IndexArray, o: ExampleScores = other_scores, keep: list[str] = common
        ) -> dict[str, npt.NDArray[np.float64]]:
            a, b = base_scores.aggregate(rows), o.aggregate(rows)
            return {name: b[name] - a[name] for name in keep}

        point = paired(np.arange(n, dtype=np.intp)[None, :])
        intervals = bootstrap(paired, n, n_boot=n_boot, seed=seed, confidence=confidence)
        full_base = base_scores.aggregate(np.arange(n, dtype=np.intp)[None, :])
        full_other = other_scores.aggregate(np.arange(n, dtype=np.intp)[None, :])
        counts = base_scores.counts()
        label = _unique_label(other.name, others, other.path)
        others.append(label)
        deltas[label] = {}
        for name in common:
            low, high = intervals[name]
            delta = float(point[name][0])
            if math.isnan(low):
                low = high = delta
            before, after = float(full_base[name][0]), float(full_other[name][0])
            deltas[label][name] = MetricDelta(before, after, delta, low, high, counts[name])
    return ComparisonTable(base.name, others, deltas, len(base_scores), confidence)


def _unique_label(name: str, taken: list[str], path: Path) -> str:
    return name if name not in taken else f"{name} ({path})"


def _need_scores(run: EvalFolder) -> ExampleScores:
    if run.table.examples is None:
        raise EvaluationInputError(
            f"{run.path} has no scores.jsonl (per-example scores); write it with "
            "MetricTable.write, e.g. by re-running `skinspector evaluate`"
        )
    return run.table.examples


def _pairing(base: EvalFolder, other: EvalFolder) -> list[int]:
    """Indices into ``other``'s records in ``base``'s order; refuses different sets."""
    base_ids, other_ids = base.ids, other.ids
    position = {example_id: i for i, example_id in enumerate(other_ids)}
    only_base = [i for i in base_ids if i not in position]
    only_other = sorted(set(other_ids) - set(base_ids))
    if only_base or only_other:
        raise EvaluationInputError(
            f"{base.path} and {other.path} evaluate different examples: "
            f"{len(only_base)} only in the base ({_sample(only_base)}), "
            f"{len(only_other)} only in the other ({_sample(only_other)}); "
            "evaluate both on the same split"
        )
    order = [position[i] for i in base_ids]
    for record, index in zip(base.records, order, strict=True):
        if str(record["reference"]) != str(other.records[index]["reference"]):
            raise EvaluationInputError(
                f"example {record['id']!r} has another reference caption in {other.path}"
            )
    return order


def _sample(ids: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:k])
    return shown + (", ..." if len(ids) > k else "") if ids else "none"
