"""Retrieval evaluation against a labelled query set, per language and per query kind.

A query set is JSONL: ``{"query": ..., "expected": <entry slug>, "kind": ...,
"language": "en"|"id"}``; without ``language``, a kind ending in ``_en`` or ``_id`` gives it.
A hit is relevant when its source file's stem equals the expected slug. For every method,
and for every group of queries (all, each language, each kind), the metrics are recall@1,
recall@5 (the expected entry among the top k chunks), MRR (mean of 1 / rank of the first
relevant chunk, 0 when none in the top 10) and entries@5 (distinct entries among the top 5:
how diverse the results are). Queries are searched as the clinic box searches them: their
language is detected, not given, and how often the detection is right is reported too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field, ValidationError
from tqdm import tqdm

from kb_builder import default_queries_path, unseen_queries_path
from kb_builder.errors import KbError
from kb_builder.language import Language
from kb_builder.retriever import HybridRetriever, Method, RetrievalParams, entry_of

__all__ = [
    "EvalQuery",
    "EvalReport",
    "MethodScore",
    "default_queries_path",
    "evaluate",
    "format_report",
    "format_table",
    "load_queries",
    "scores_json",
    "unseen_queries_path",
]

DEPTH = 10
ALL = "all"
MAIN_METHODS = 4  # bm25, dense, hybrid, rrf; the rest are the weight sweep


class EvalQuery(BaseModel):
    query: str = Field(min_length=1)
    expected: str = Field(min_length=1)
    kind: str = "unspecified"
    language: Language | None = None

    @property
    def language_label(self) -> str:
        if self.language is not None:
            return self.language.value
        for code in Language:
            if self.kind.endswith(f"_{code.value}"):
                return code.value
        return "unspecified"


@dataclass(frozen=True, slots=True)
class MethodScore:
    label: str
    recall_at_1: float
    recall_at_5: float
    mrr: float
    queries: int
    group: str = ALL
    entries_at_5: float = 0.0


@dataclass(slots=True)
class EvalReport:
    scores: list[MethodScore]
    # per language: (queries whose language was detected as theirs, queries)
    detection: dict[str, tuple[int, int]] = field(default_factory=dict)

    def get(self, label: str, group: str = ALL) -> MethodScore:
        for score in self.scores:
            if score.label == label and score.group == group:
                return score
        raise KeyError(f"{label} / {group}")

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(s.group for s in self.scores))


def load_queries(path: Path) -> list[EvalQuery]:
    if not path.is_file():
        raise KbError(f"query file not found: {path}")
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            queries.append(EvalQuery.model_validate_json(line))
        except ValidationError as exc:
            raise KbError(f"{path}:{number}: not a valid query record ({exc})") from exc
    if not queries:
        raise KbError(f"{path} holds no queries")
    return queries


def _first_relevant_rank(sources: Sequence[str], expected: str) -> int | None:
    for rank, source in enumerate(sources, start=1):
        if PurePosixPath(source).stem == expected:
            return rank
    return None


def _weight(value: float) -> str:
    """0.6 -> "0.6", 0.25 -> "0.25": labels stay distinct for any sweep."""
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-9 else f"{value:.2f}"


def method_configs(
    base: RetrievalParams, weights: Sequence[float]
) -> list[tuple[str, RetrievalParams]]:
    """BM25 only, dense only, hybrid at the configured weight, RRF, then the weight sweep."""
    configs: list[tuple[str, RetrievalParams]] = [
        ("bm25 only", base.model_copy(update={"method": Method.BM25})),
        ("dense only", base.model_copy(update={"method": Method.DENSE})),
        (
            f"hybrid {_weight(base.semantic_weight)}/{_weight(1 - base.semantic_weight)}",
            base.model_copy(update={"method": Method.HYBRID}),
        ),
        ("rrf", base.model_copy(update={"method": Method.RRF})),
    ]
    if len({w for w in weights}) != len(weights):
        raise KbError("the weight sweep repeats a weight")
    configs += [
        (
            f"sweep w_sem={_weight(w)}",
            base.model_copy(update={"method": Method.HYBRID, "semantic_weight": w}),
        )
        for w in weights
    ]
    return configs


def evaluate(
    retriever: HybridRetriever,
    queries: Sequence[EvalQuery],
    *,
    weights: Sequence[float] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
    progress: bool = True,
) -> EvalReport:
    """Scores of every method for all queries, each language and each kind. Each query is
    embedded and pooled once (its language detected as in production)."""
    configs = method_configs(retriever.params, weights)
    # group -> label -> (first relevant rank, distinct entries in the top 5) per query
    found: dict[str, dict[str, list[tuple[int | None, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    detection: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for query in tqdm(queries, desc="evaluating", unit="query", disable=not progress):
        pool = retriever.candidates(query.query)
        language = query.language_label
        detection[language][0] += int(pool.language is not None and pool.language == language)
        detection[language][1] += 1
        groups = (ALL, f"language={language}", f"kind={query.kind}")
        for label, params in configs:
            hits = retriever.rank(pool, DEPTH, params)
            rank = _first_relevant_rank([h.source for h in hits], query.expected)
            entries = len({entry_of(h.source, h.heading) for h in hits[:5]})
            for group in groups:
                found[group][label].append((rank, entries))
    scores = []
    for group in sorted(found, key=_group_order):
        for label, results in found[group].items():
            n = len(results)
            ranks = [rank for rank, _ in results]
            scores.append(
                MethodScore(
                    label=label,
                    group=group,
                    recall_at_1=sum(1 for r in ranks if r == 1) / n,
                    recall_at_5=sum(1 for r in ranks if r is not None and r <= 5) / n,
                    mrr=sum(1 / r for r in ranks if r is not None) / n,
                    entries_at_5=sum(entries for _, entries in results) / n,
                    queries=n,
                )
            )
    return EvalReport(
        scores=scores, detection={k: (v[0], v[1]) for k, v in sorted(detection.items())}
    )


def _group_order(group: str) -> tuple[int, str]:
    return (0 if group == ALL else 1 if group.startswith("language=") else 2, group)


def format_table(scores: Sequence[MethodScore]) -> str:
    lines = [f"{'method':<22} {'recall@1':>9} {'recall@5':>9} {'MRR':>7} {'entries@5':>10}"]
    for s in scores:
        lines.append(
            f"{s.label:<22} {s.recall_at_1:>9.3f} {s.recall_at_5:>9.3f} {s.mrr:>7.3f} "
            f"{s.entries_at_5:>10.2f}"
        )
    return "\n".join(lines)


def format_report(report: EvalReport, *, sweep: bool = True) -> str:
    """One table per group: all queries (with the weight sweep), each language (with the
    sweep), each kind (the four methods)."""
    parts = []
    for group in report.groups:
        rows = [s for s in report.scores if s.group == group]
        if group.startswith("kind=") or not sweep:
            rows = rows[:MAIN_METHODS]
        title = "all queries" if group == ALL else group
        parts.append(f"{title} ({rows[0].queries} queries)\n{format_table(rows)}")
    detected = ", ".join(
        f"{language} {right}/{total}" for language, (right, total) in report.detection.items()
    )
    parts.append(f"query language detected correctly: {detected}")
    return "\n\n".join(parts)


def scores_json(report: EvalReport) -> str:
    return json.dumps(
        {
            "scores": [asdict(s) for s in report.scores],
            "language_detection": {
                language: {"correct": right, "queries": total}
                for language, (right, total) in report.detection.items()
            },
        },
        indent=2,
    )
