"""Retrieval evaluation against a labelled query set.

A query set is JSONL: ``{"query": ..., "expected": <entry slug>, "kind": ...}``; a hit is
relevant when its source file's stem equals the expected slug. For every method the
metrics are recall@1, recall@5 (the expected entry among the top k chunks) and MRR (mean of
1 / rank of the first relevant chunk, 0 when none in the top 10).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from kb_builder import default_queries_path
from kb_builder.errors import KbError
from kb_builder.retriever import HybridRetriever, Method, RetrievalParams

__all__ = [
    "EvalQuery",
    "MethodScore",
    "default_queries_path",
    "evaluate",
    "format_table",
    "load_queries",
    "scores_json",
]

DEPTH = 10


class EvalQuery(BaseModel):
    query: str
    expected: str
    kind: str = "unspecified"


@dataclass(frozen=True, slots=True)
class MethodScore:
    label: str
    recall_at_1: float
    recall_at_5: float
    mrr: float
    queries: int


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


def evaluate(
    retriever: HybridRetriever,
    queries: Sequence[EvalQuery],
    *,
    weights: Sequence[float] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
    progress: bool = True,
) -> list[MethodScore]:
    """Scores for BM25 only, dense only, hybrid at the configured weight, RRF, then the
    hybrid at each weight of the sweep. Each query is embedded and pooled once."""
    base = retriever.params
    configs: list[tuple[str, RetrievalParams]] = [
        ("bm25 only", base.model_copy(update={"method": Method.BM25})),
        ("dense only", base.model_copy(update={"method": Method.DENSE})),
        (
            f"hybrid {base.semantic_weight:.1f}/{1 - base.semantic_weight:.1f}",
            base.model_copy(update={"method": Method.HYBRID}),
        ),
        ("rrf", base.model_copy(update={"method": Method.RRF})),
    ]
    configs += [
        (
            f"sweep w_sem={w:.1f}",
            base.model_copy(update={"method": Method.HYBRID, "semantic_weight": w}),
        )
        for w in weights
    ]
    ranks: dict[str, list[int | None]] = {label: [] for label, _ in configs}
    for query in tqdm(queries, desc="evaluating", unit="query", disable=not progress):
        pool = retriever.candidates(query.query)
        for label, params in configs:
            hits = retriever.rank(pool, DEPTH, params)
            ranks[label].append(_first_relevant_rank([h.source for h in hits], query.expected))
    scores = []
    for label, found in ranks.items():
        n = len(found)
        scores.append(
            MethodScore(
                label=label,
                recall_at_1=sum(1 for r in found if r == 1) / n,
                recall_at_5=sum(1 for r in found if r is not None and r <= 5) / n,
                mrr=sum(1 / r for r in found if r is not None) / n,
                queries=n,
            )
        )
    return scores


def format_table(scores: Sequence[MethodScore]) -> str:
    lines = [f"{'method':<22} {'recall@1':>9} {'recall@5':>9} {'MRR':>7}"]
    for s in scores:
        lines.append(f"{s.label:<22} {s.recall_at_1:>9.3f} {s.recall_at_5:>9.3f} {s.mrr:>7.3f}")
    return "\n".join(lines)


def scores_json(scores: Sequence[MethodScore]) -> str:
    return json.dumps([asdict(s) for s in scores], indent=2)
