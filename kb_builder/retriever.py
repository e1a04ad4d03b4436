"""``HybridRetriever``: the query side of the index ``build_index`` writes.

search(text, k, language=None), in small named steps:
1. ``plan``: the query's language (given, or detected from its words; "unknown" searches
   both) picks the lexical queries: English text -> the English-stemmed BM25 index;
   Indonesian text -> the Indonesian-stemmed index, plus its glossary translation
   (Indonesian lay words -> English clinical words) in the English index;
2. ``pool``: top-N dense candidates (ChromaDB HNSW, cosine) and top-N of every lexical query
   (bm25s; hits scoring 0 are not candidates). A chunk's lexical score is the sum over the
   lexical queries of its BM25 score divided by that query's best score;
3. ``normalise``: each side's scores min-max normalised over the pool, a candidate missing
   from a side scoring 0 there (``minmax``);
4. ``fuse``: w_sem * semantic + (1 - w_sem) * lexical (0.6 / 0.4 by default), or reciprocal
   rank fusion (``rrf``), or one side alone (``dense``, ``bm25``) for comparison;
5. ``filter``: the cosine floor (``min_cosine``) works on the semantic side only: it drops
   dense-only candidates whose cosine to the query is under it, never a lexical match, and
   nothing at all under ``bm25``;
6. ``dedupe``: duplicates (same chunk text) collapse onto the best-scored one;
7. ``diversify``: at most ``max_per_entry`` chunks of one knowledge-base entry (a source
   file's top-level section), so one entry cannot fill the whole top k.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
from kb_builder.errors import IncompatibleIndexError, IndexMissingError, QueryError
from kb_builder.language import Glossary, Language, default_glossary, detect_language
from kb_builder.manifest import CHROMA_DIR, CHUNKS_NAME, EMBEDDINGS_NAME, IndexManifest

__all__ = [
    "CandidatePool",
    "Hit",
    "HybridRetriever",
    "LexicalQuery",
    "Method",
    "RetrievalParams",
    "entry_of",
    "minmax",
    "reciprocal_rank_fusion",
]

log = logging.getLogger(__name__)


class Method(StrEnum):
    HYBRID = "hybrid"
    RRF = "rrf"
    DENSE = "dense"
    BM25 = "bm25"


class RetrievalParams(BaseModel):
    semantic_weight: float = Field(0.2, ge=0.0, le=1.0, description="Lexical = 1 - this.")
    candidates: int = Field(30, ge=1, le=1000, description="Top-N taken from each list.")
    min_cosine: float = Field(
        0.2,
        ge=-1.0,
        le=1.0,
        description="Cosine floor of the semantic side: dense-only candidates under it are "
        "dropped; lexical matches never are.",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    method: Method = Method.HYBRID
    max_per_entry: int = Field(
        2, ge=1, le=1000, description="At most this many chunks of one entry in the results."
    )
    glossary: bool = Field(
        True, description="Also search an Indonesian query's English glossary translation."
    )


class Hit(NamedTuple):
    chunk_id: str
    text: str
    source: str
    title: str
    heading: str | None
    page: int | None
    score: float  # the fused score the ranking used
    semantic: float  # min-max normalised over the pool; 0 if not in the dense list
    lexical: float  # min-max normalised over the pool; 0 if not in any BM25 list
    cosine: float  # exact cosine between query and chunk
    bm25: float  # summed per-query-normalised BM25 score (0 if not in any BM25 list)


class LexicalQuery(NamedTuple):
    """One BM25 search of the plan: which language's index, with which text."""

    language: Language
    text: str


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


def entry_of(source: str, heading: str | None) -> str:
    """The knowledge-base entry a chunk belongs to: its source file and the top level of its
    heading path (one Markdown file per condition -> the file; a PDF -> its section)."""
    top = heading.split(" > ", 1)[0] if heading else ""
    return f"{source}#{top}"


def _ranks(scores: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    """1-based rank of each present entry by score (best first); absent entries 0."""
    ranks = np.zeros_like(scores)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if present[i]]
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


@dataclass(slots=True)
class CandidatePool:
    """The pooled candidates of one query; rank them with any method and weights."""

    rows: npt.NDArray[np.int64]  # chunk row numbers
    cosine: npt.NDArray[np.float64]  # exact cosine for every candidate
    dense_score: npt.NDArray[np.float64]  # cosine where in the dense list, else 0
    in_dense: npt.NDArray[np.bool_]
    dense_rank: npt.NDArray[np.float64]  # 1-based, 0 = absent
    bm25_score: npt.NDArray[np.float64]  # summed per-query-normalised BM25 score
    in_bm25: npt.NDArray[np.bool_]
    bm25_rank: npt.NDArray[np.float64]
    language: Language | None = None  # the query language the plan used (None: both)
    semantic_counts: bool = True  # False: the embedder does not cover the query's language

    def normalised(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(semantic, lexical), each min-max normalised over the pool."""
        return minmax(self.dense_score, self.in_dense), minmax(self.bm25_score, self.in_bm25)

    def fused(
        self,
        params: RetrievalParams,
        semantic: npt.NDArray[np.float64],
        lexical: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """The ranking score of every candidate; -inf where the method does not see it.

        When the embedder does not cover the query's language, the fused methods rank by
        the lexical side (dense-only candidates, if above the floor, come after); ``dense``
        still ranks by cosine, for comparison."""
        if params.method is Method.HYBRID:
            weight = params.semantic_weight if self.semantic_counts else 0.0
            return weight * semantic + (1 - weight) * lexical
        if params.method is Method.RRF:
            ranks = [self.dense_rank, self.bm25_rank] if self.semantic_counts else [self.bm25_rank]
            return reciprocal_rank_fusion(ranks, params.rrf_k)
        if params.method is Method.DENSE:
            return np.where(self.in_dense, self.cosine, -np.inf)
        return np.where(self.in_bm25, self.bm25_score, -np.inf)

    def kept(self, params: RetrievalParams) -> npt.NDArray[np.bool_]:
        """The cosine floor, on the semantic side only: a dense-only candidate under
        ``min_cosine`` goes; a lexical match stays; under ``bm25`` nothing goes."""
        if params.method is Method.BM25:
            return np.ones_like(self.in_bm25)
        above = self.cosine >= params.min_cosine
        if params.method is Method.DENSE:
            return above
        return self.in_bm25 | above

    def ranked(self, params: RetrievalParams) -> list[tuple[int, float, float, float, int]]:
        """(pool index, fused, semantic, lexical, row) best first, floor applied."""
        semantic, lexical = self.normalised()
        fused = self.fused(params, semantic, lexical)
        keep = np.isfinite(fused) & self.kept(params)
        order = [int(i) for i in np.argsort(-fused, kind="stable") if keep[i]]
        return [
            (i, float(fused[i]), float(semantic[i]), float(lexical[i]), int(self.rows[i]))
            for i in order
        ]


@dataclass(slots=True)
class _Lexical:
    language: Language
    index: Any
    stemmer: str


class HybridRetriever:
    """Opens an index directory once; ``search`` is then cheap and thread-compatible
    (serialise calls per instance: the llama.cpp embedder is not thread-safe)."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder | None = None,
        params: RetrievalParams | None = None,
        glossary: Glossary | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.manifest = IndexManifest.read(index_dir)
        self.params = params or RetrievalParams()
        lexical_dirs = [lexical.path for lexical in self.manifest.lexical]
        for name in (CHUNKS_NAME, EMBEDDINGS_NAME, CHROMA_DIR, *lexical_dirs):
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
        self._entries = [entry_of(c["source"], c["heading"]) for c in self._chunks]
        import Stemmer

        for lexical in self.manifest.lexical:
            if lexical.stemmer not in Stemmer.algorithms():
                raise IncompatibleIndexError(
                    f"{index_dir}: lexical index {lexical.path} uses the stemmer "
                    f"{lexical.stemmer!r}, which PyStemmer does not have; rebuild the index"
                )
        self._lexical = {
            lexical.language: _Lexical(
                lexical.language, _stores.load_bm25(index_dir / lexical.path), lexical.stemmer
            )
            for lexical in self.manifest.lexical
        }
        self.glossary = glossary if glossary is not None else default_glossary()
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

    @property
    def languages(self) -> list[Language]:
        """The languages the index has a lexical index for."""
        return list(self._lexical)

    # ------------------------------------------------------------------ plan

    def plan(
        self,
        text: str,
        language: Language | str | None = None,
        params: RetrievalParams | None = None,
    ) -> tuple[Language | None, list[LexicalQuery]]:
        """The query's language (given or detected; ``None``: unknown) and its BM25 searches.

        English -> the English index. Indonesian -> the Indonesian index (the English index
        on a format-1 index that has no other), plus the glossary translation in the English
        index. Unknown -> both indexes, and the translation.
        """
        params = params or self.params
        chosen = _language(language) if language is not None else detect_language(text)
        wanted = [chosen] if chosen is not None else list(Language)
        queries: list[LexicalQuery] = []
        for lang in wanted:
            target = lang if lang in self._lexical else Language.ENGLISH
            if target in self._lexical and LexicalQuery(target, text) not in queries:
                queries.append(LexicalQuery(target, text))
        if chosen is not Language.ENGLISH and params.glossary and Language.ENGLISH in self._lexical:
            translation = self.glossary.translate(text)
            if translation:
                queries.append(LexicalQuery(Language.ENGLISH, translation))
        return chosen, queries

    # ------------------------------------------------------------------ pool

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        prefix = self.manifest.embedding.query_prefix
        return np.asarray(self.embedder.embed([prefix + text])[0], dtype=np.float32)

    def _bm25(self, query: LexicalQuery, n: int) -> dict[int, float]:
        """Row -> BM25 score of one lexical query's top ``n`` (zero scores left out)."""
        lexical = self._lexical[query.language]
        tokens = _stores.bm25_tokenize([query.text], lexical.stemmer)
        if not tokens or not tokens[0]:
            return {}
        tokens = [list(dict.fromkeys(tokens[0]))]  # "gatal-gatal": one word, not two
        found, scores = lexical.index.retrieve(tokens, k=n, show_progress=False, n_threads=1)
        return {
            int(row): float(score)
            for row, score in zip(found[0], scores[0], strict=True)
            if score > 0
        }

    def candidates(
        self,
        text: str,
        query_vector: npt.NDArray[np.float32] | None = None,
        n: int | None = None,
        language: Language | str | None = None,
        params: RetrievalParams | None = None,
    ) -> CandidatePool:
        """Pool the dense and lexical candidates of ``text`` (``params`` decide the plan's
        glossary step; ``n`` defaults to ``params.candidates``)."""
        params = params or self.params
        n = min(n or params.candidates, len(self._chunks))
        chosen, queries = self.plan(text, language, params)
        vector = self.embed_query(text) if query_vector is None else query_vector
        dense = self._collection.query(
            query_embeddings=[vector.tolist()], n_results=n, include=["distances"]
        )
        dense_rows = [self._row_of[i] for i in dense["ids"][0]]
        lexical: dict[int, float] = {}
        for query in queries:
            found = self._bm25(query, n)
            best = max(found.values(), default=0.0)
            for row, score in found.items():
                lexical[row] = lexical.get(row, 0.0) + score / best
        rows = list(dict.fromkeys(dense_rows + list(lexical)))
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
            language=chosen,
            semantic_counts=chosen is None or chosen in self.manifest.embedding.languages,
        )
        index = {row: i for i, row in enumerate(rows)}
        for rank, row in enumerate(dense_rows, start=1):
            i = index[row]
            pool.in_dense[i], pool.dense_rank[i] = True, rank
            pool.dense_score[i] = pool.cosine[i]
        for row, score in lexical.items():
            i = index[row]
            pool.in_bm25[i], pool.bm25_score[i] = True, score
        pool.bm25_rank = _ranks(pool.bm25_score, pool.in_bm25)
        return pool

    # ------------------------------------------------------------------ search

    def _fingerprint(self, row: int) -> str:
        text = " ".join(self._chunks[row]["text"].split()).lower()
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def rank(self, pool: CandidatePool, k: int, params: RetrievalParams | None = None) -> list[Hit]:
        """Fuse, filter, dedupe and diversify the pool into at most ``k`` hits."""
        params = params or self.params
        hits: list[Hit] = []
        seen_text: set[str] = set()
        per_entry: dict[str, int] = {}
        for i, fused, semantic, lexical, row in pool.ranked(params):
            fingerprint = self._fingerprint(row)
            entry = self._entries[row]
            if fingerprint in seen_text or per_entry.get(entry, 0) >= params.max_per_entry:
                continue
            seen_text.add(fingerprint)
            per_entry[entry] = per_entry.get(entry, 0) + 1
            chunk = self._chunks[row]
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

    def search(
        self,
        text: str,
        k: int = 5,
        params: RetrievalParams | None = None,
        language: Language | str | None = None,
    ) -> list[Hit]:
        """The top ``k`` chunks for ``text`` (fewer if the floor drops some).

        ``language`` ("en", "id") says what language ``text`` is in; without it the
        language is detected from the words, and a query that does not tell is searched in
        both.
        """
        if not text.strip():
            return []
        params = params or self.params
        pool = self.candidates(text, language=language, params=params)
        return self.rank(pool, k, params)


def _language(value: Language | str) -> Language:
    try:
        return Language(value)
    except ValueError:
        known = ", ".join(item.value for item in Language)
        raise QueryError(f"unknown query language {value!r} (known: {known})") from None
