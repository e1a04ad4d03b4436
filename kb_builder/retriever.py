"""``HybridRetriever``: the query side of the index ``build_index`` writes.

search(text, k):
1. candidate pool = top-N dense (ChromaDB HNSW, cosine) and top-N BM25 (bm25s; hits with
   score 0 are not candidates);
2. each list's scores min-max normalised over the pool, a candidate missing from a list
   scoring 0 there (``minmax``);
3. fused = w_sem * semantic + w_lex * lexical (0.6 / 0.4 by default), or reciprocal rank
   fusion (``rrf``) for comparison;
4. candidates whose exact cosine to the query is under ``min_cosine`` are dropped (BM25-only
   candidates included: their cosine comes from the stored embeddings);
5. duplicates (same chunk text) collapse onto the best-scored one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from kb_builder import _stores
from kb_builder.embedding import Embedder, LlamaCppEmbedder
from kb_builder.errors import IncompatibleIndexError, IndexMissingError
from kb_builder.manifest import (
    BM25_DIR,
    CHROMA_DIR,
    CHUNKS_NAME,
    EMBEDDINGS_NAME,
    IndexManifest,
)

__all__ = [
    "CandidatePool",
    "Hit",
    "HybridRetriever",
    "Method",
    "RetrievalParams",
    "minmax",
    "reciprocal_rank_fusion",
]


class Method(StrEnum):
    HYBRID = "hybrid"
    RRF = "rrf"
    DENSE = "dense"
    BM25 = "bm25"


class RetrievalParams(BaseModel):
    semantic_weight: float = Field(0.6, ge=0.0, le=1.0, description="Lexical = 1 - this.")
    candidates: int = Field(30, ge=1, le=1000, description="Top-N taken from each list.")
    min_cosine: float = Field(0.2, ge=-1.0, le=1.0, description="Drop candidates below this.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    method: Method = Method.HYBRID


class Hit(NamedTuple):
    chunk_id: str
    text: str
    source: str
    title: str
    heading: str | None
    page: int | None
    score: float  # the fused score the ranking used
    semantic: float  # min-max normalised over the pool; 0 if not in the dense list
    lexical: float  # min-max normalised over the pool; 0 if not in the BM25 list
    cosine: float  # exact cosine between query and chunk
    bm25: float  # raw BM25 score (0 if not in the BM25 list)


def minmax(
    values: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Min-max normalisation over the present entries; absent entries score 0.

    (x - min) / (max - min); when every present value is equal, present entries score 1.
    """
    out = np.zeros_like(values, dtype=np.float64)
    if not present.any():
        return out
    chosen = values[present]
    low, high = float(chosen.min()), float(chosen.max())
    out[present] = 1.0 if high - low < 1e-12 else (chosen - low) / (high - low)
    return out


def reciprocal_rank_fusion(
    ranks: Sequence[npt.NDArray[np.float64]], k: int
) -> npt.NDArray[np.float64]:
    """RRF(d) = sum over lists of 1 / (k + rank_d), rank 1-based; absent (rank 0) adds 0."""
    total = np.zeros_like(ranks[0], dtype=np.float64)
    for rank in ranks:
        total += np.where(rank > 0, 1.0 / (k + rank), 0.0)
    return total


@dataclass(slots=True)
class CandidatePool:
    """The pooled candidates of one query; rank them with any method and weights."""

    rows: npt.NDArray[np.int64]  # chunk row numbers
    cosine: npt.NDArray[np.float64]  # exact cosine for every candidate
    dense_score: npt.NDArray[np.float64]  # cosine where in the dense list, else 0
    in_dense: npt.NDArray[np.bool_]
    dense_rank: npt.NDArray[np.float64]  # 1-based, 0 = absent
    bm25_score: npt.NDArray[np.float64]
    in_bm25: npt.NDArray[np.bool_]
    bm25_rank: npt.NDArray[np.float64]

    def scores(self, params: RetrievalParams) -> tuple[npt.NDArray[np.float64], ...]:
        semantic = minmax(self.dense_score, self.in_dense)
        lexical = minmax(self.bm25_score, self.in_bm25)
        if params.method is Method.HYBRID:
            fused = params.semantic_weight * semantic + (1 - params.semantic_weight) * lexical
        elif params.method is Method.RRF:
            fused = reciprocal_rank_fusion([self.dense_rank, self.bm25_rank], params.rrf_k)
        elif params.method is Method.DENSE:
            fused = np.where(self.in_dense, self.cosine, -np.inf)
        else:
            fused = np.where(self.in_bm25, self.bm25_score, -np.inf)
        return fused, semantic, lexical

    def ranked(self, params: RetrievalParams, k: int) -> list[tuple[int, float, float, float, int]]:
        """(pool index, fused, semantic, lexical, row) best first, threshold applied."""
        fused, semantic, lexical = self.scores(params)
        keep = np.isfinite(fused) & (self.cosine >= params.min_cosine)
        order = [int(i) for i in np.argsort(-fused, kind="stable") if keep[i]]
        return [
            (i, float(fused[i]), float(semantic[i]), float(lexical[i]), int(self.rows[i]))
            for i in order[: max(k * 3, k)]
        ]


class HybridRetriever:
    """Opens an index directory once; ``search`` is then cheap and thread-compatible
    (serialise calls per instance: the llama.cpp embedder is not thread-safe)."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder | None = None,
        params: RetrievalParams | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.manifest = IndexManifest.read(index_dir)
        self.params = params or RetrievalParams()
        for name in (CHUNKS_NAME, EMBEDDINGS_NAME, BM25_DIR, CHROMA_DIR):
            if not (index_dir / name).exists():
                raise IndexMissingError(f"{index_dir} is incomplete: {name} is missing")
        self.embedder = embedder or self._bundled_embedder()
        if self.embedder.dimension != self.manifest.embedding.dimension:
            raise IncompatibleIndexError(
                f"embedding dimension mismatch: the index was built with "
                f"{self.manifest.embedding.model_id} ({self.manifest.embedding.dimension}), "
                f"the query embedder {self.embedder.model_id} gives {self.embedder.dimension}"
            )
        self._chunks = [
            json.loads(line)
            for line in (index_dir / CHUNKS_NAME).read_text(encoding="utf-8").splitlines()
        ]
        self._embeddings: npt.NDArray[np.float32] = np.load(
            index_dir / EMBEDDINGS_NAME, mmap_mode="r"
        )
        if self._embeddings.shape != (len(self._chunks), self.manifest.embedding.dimension):
            raise IncompatibleIndexError(f"{index_dir}: embeddings do not match the chunks")
        self._row_of = {chunk["id"]: row for row, chunk in enumerate(self._chunks)}
        self._bm25 = _stores.load_bm25(index_dir / BM25_DIR)
        self._stemmer: Any = None
        try:
            self._collection = _stores.chroma_collection(index_dir / CHROMA_DIR, None, create=False)
        except Exception as exc:  # chromadb raises NotFoundError / ValueError by version
            raise IndexMissingError(
                f"{index_dir}: the dense index cannot be opened ({exc})"
            ) from exc

    def _bundled_embedder(self) -> Embedder:
        info = self.manifest.embedding
        if info.gguf is None:
            raise IncompatibleIndexError(
                f"{self.index_dir} has no bundled GGUF embedder; pass an embedder for "
                f"{info.model_id}"
            )
        return LlamaCppEmbedder(self.index_dir / info.gguf, info.model_id)

    def __len__(self) -> int:
        return len(self._chunks)

    # ------------------------------------------------------------------ candidates

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return np.asarray(self.embedder.embed([text])[0], dtype=np.float32)

    def candidates(
        self, text: str, query_vector: npt.NDArray[np.float32] | None = None, n: int | None = None
    ) -> CandidatePool:
        n = min(n or self.params.candidates, len(self._chunks))
        vector = self.embed_query(text) if query_vector is None else query_vector
        dense = self._collection.query(
            query_embeddings=[vector.tolist()], n_results=n, include=["distances"]
        )
        dense_rows = [self._row_of[i] for i in dense["ids"][0]]
        tokens = _stores.bm25_tokenize([text], self._stemmer)
        lexical_rows: list[int] = []
        lexical_scores: list[float] = []
        if tokens and tokens[0]:
            found, scores = self._bm25.retrieve(tokens, k=n, show_progress=False, n_threads=1)
            for row, score in zip(found[0], scores[0], strict=True):
                if score > 0:
                    lexical_rows.append(int(row))
                    lexical_scores.append(float(score))
        rows = list(dict.fromkeys(dense_rows + lexical_rows))
        index = {row: i for i, row in enumerate(rows)}
        size = len(rows)
        pool = CandidatePool(
            rows=np.asarray(rows, dtype=np.int64),
            cosine=np.asarray(self._embeddings[rows] @ vector, dtype=np.float64)
            if rows
            else np.zeros(0),
            dense_score=np.zeros(size),
            in_dense=np.zeros(size, dtype=bool),
            dense_rank=np.zeros(size),
            bm25_score=np.zeros(size),
            in_bm25=np.zeros(size, dtype=bool),
            bm25_rank=np.zeros(size),
        )
        for rank, row in enumerate(dense_rows, start=1):
            i = index[row]
            pool.in_dense[i], pool.dense_rank[i] = True, rank
            pool.dense_score[i] = pool.cosine[i]
        for rank, (row, score) in enumerate(zip(lexical_rows, lexical_scores, strict=True), 1):
            i = index[row]
            pool.in_bm25[i], pool.bm25_rank[i], pool.bm25_score[i] = True, rank, score
        return pool

    # ------------------------------------------------------------------ search

    def rank(self, pool: CandidatePool, k: int, params: RetrievalParams | None = None) -> list[Hit]:
        params = params or self.params
        hits: list[Hit] = []
        seen_text: set[str] = set()
        for i, fused, semantic, lexical, row in pool.ranked(params, k):
            chunk = self._chunks[row]
            fingerprint = hashlib.sha1(
                " ".join(chunk["text"].split()).lower().encode(), usedforsecurity=False
            ).hexdigest()
            if fingerprint in seen_text:
                continue
            seen_text.add(fingerprint)
            hits.append(
                Hit(
                    chunk_id=chunk["id"],
                    text=chunk["text"],
                    source=chunk["source"],
                    title=chunk["title"],
                    heading=chunk["heading"],
                    page=chunk["page"],
                    score=fused,
                    semantic=semantic,
                    lexical=lexical,
                    cosine=float(pool.cosine[i]),
                    bm25=float(pool.bm25_score[i]),
                )
            )
            if len(hits) == k:
                break
        return hits

    def search(self, text: str, k: int = 5, params: RetrievalParams | None = None) -> list[Hit]:
        """The top ``k`` chunks for ``text`` (fewer if the threshold drops some)."""
        if not text.strip():
            return []
        params = params or self.params
        return self.rank(self.candidates(text, n=params.candidates), k, params)
