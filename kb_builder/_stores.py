"""The index stores, written and opened in one place (ChromaDB and one bm25s index per
language)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kb_builder.language import Language, stemmer_name, stopwords
from kb_builder.manifest import COLLECTION, HnswParams

__all__ = ["add_embeddings", "bm25_tokenize", "build_bm25", "chroma_collection", "load_bm25"]


@cache
def _stemmer(algorithm: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(algorithm)


def bm25_tokenize(texts: Sequence[str], stemmer: str = "english") -> list[list[str]]:
    """Lower-cased words, stop words (English + Indonesian) dropped, then stemmed with the
    PyStemmer algorithm ``stemmer`` ("english", "indonesian")."""
    import bm25s

    tokens: list[list[str]] = bm25s.tokenize(
        list(texts),
        stopwords=list(stopwords()),
        stemmer=_stemmer(stemmer),
        return_ids=False,
        show_progress=False,
    )
    return tokens


def _quiet_bm25s() -> None:
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def build_bm25(texts: Sequence[str], out_dir: Path, language: Language) -> None:
    import bm25s

    _quiet_bm25s()
    retriever = bm25s.BM25()
    retriever.index(bm25_tokenize(texts, stemmer_name(language)), show_progress=False)
    retriever.save(str(out_dir), show_progress=False)


def load_bm25(index_dir: Path) -> Any:
    import bm25s

    _quiet_bm25s()
    return bm25s.BM25.load(str(index_dir), mmap=True, show_progress=False)


def chroma_collection(path: Path, hnsw: HnswParams | None, *, create: bool) -> Any:
    """Open (or create) the collection. No embedding function: we always pass vectors."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
    )
    if not create:
        return client.get_collection(COLLECTION, embedding_function=None)
    if hnsw is None:
        raise ValueError("HNSW parameters are needed to create a collection")
    configuration: Any = {"hnsw": hnsw.model_dump()}
    return client.create_collection(
        COLLECTION, embedding_function=None, configuration=configuration
    )


def add_embeddings(
    collection: Any, ids: Sequence[str], vectors: npt.NDArray[np.float32], batch: int
) -> None:
    limit = min(batch, 5461)  # ChromaDB refuses larger add() calls
    for start in range(0, len(ids), limit):
        stop = start + limit
        collection.add(
            ids=list(ids[start:stop]),
            embeddings=vectors[start:stop],
            metadatas=[{"row": row} for row in range(start, min(stop, len(ids)))],
        )
