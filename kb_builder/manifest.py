"""The index manifest: the one description of an index directory, written last.

An index directory holds ``manifest.json``, ``chunks.jsonl`` (the chunk texts and where
they come from), ``embeddings.npy`` (L2-normalised float32, row i = chunk i), ``chroma/``
(the persistent HNSW index), one bm25s index per language (``bm25/`` English stemming,
``bm25-id/`` Indonesian stemming) and, for torch-free querying, ``embedder/<model>.gguf``.
Every path inside is relative, so the directory can be moved or shipped in an update bundle
as it is.

Format versions: 2 lists its lexical indexes (``lexical``) and the embedder's query and
passage prefixes. 1 (before Indonesian stemming) had one English ``bm25/`` index: it is
still read, as an index with that one lexical index, and queries against it say in the log
that a rebuild adds Indonesian stemming. Any other version is refused ("rebuild the index").
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from kb_builder.chunking import ChunkingParams
from kb_builder.errors import IncompatibleIndexError, IndexMissingError
from kb_builder.language import Language, stemmer_name

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "DocumentRecord",
    "EmbeddingInfo",
    "HnswParams",
    "IndexManifest",
    "LexicalIndex",
    "SkippedRecord",
    "standard_lexical_indexes",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
MANIFEST_NAME = "manifest.json"
CHUNKS_NAME = "chunks.jsonl"
EMBEDDINGS_NAME = "embeddings.npy"
CHROMA_DIR = "chroma"
BM25_DIR = "bm25"
BM25_DIRS = {Language.ENGLISH: BM25_DIR, Language.INDONESIAN: "bm25-id"}
EMBEDDER_DIR = "embedder"
COLLECTION = "chunks"


class HnswParams(BaseModel):
    """ChromaDB HNSW settings (see bench/bench_retrieval.py for the recall they give)."""

    space: str = "cosine"
    ef_construction: int = Field(200, ge=10, le=2000)
    max_neighbors: int = Field(32, ge=4, le=256)
    ef_search: int = Field(256, ge=10, le=4000)


class EmbeddingInfo(BaseModel):
    model_id: str
    backend: str
    dimension: int = Field(ge=1)
    gguf: str | None = Field(None, description="Bundled GGUF, relative to the index dir.")
    normalised: bool = True
    languages: list[Language] = Field(
        default_factory=lambda: [Language.ENGLISH],
        min_length=1,
        description="Languages the model embeds well; the dense side counts for these.",
    )
    query_prefix: str = Field("", description='Put before every query, e.g. "query: " (E5).')
    passage_prefix: str = Field("", description='Put before every chunk, e.g. "passage: ".')


class LexicalIndex(BaseModel):
    """One bm25s index over every chunk, analysed for one language."""

    language: Language
    path: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Folder in the index dir.")
    stemmer: str = Field(description="PyStemmer algorithm.")


class DocumentRecord(BaseModel):
    source: str
    sha256: str
    title: str
    chunks: int
    pages: int | None = None


class SkippedRecord(BaseModel):
    source: str
    reason: str


def standard_lexical_indexes() -> list[LexicalIndex]:
    """What ``build_index`` writes: an English-stemmed and an Indonesian-stemmed index."""
    return [
        LexicalIndex(language=language, path=BM25_DIRS[language], stemmer=stemmer_name(language))
        for language in Language
    ]


class IndexManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    embedding: EmbeddingInfo
    chunking: ChunkingParams
    hnsw: HnswParams
    bm25: dict[str, str] = Field(default_factory=dict)
    lexical: list[LexicalIndex] = Field(default_factory=lambda: standard_lexical_indexes())
    document_count: int
    chunk_count: int
    documents: list[DocumentRecord]
    skipped: list[SkippedRecord] = Field(default_factory=list)
    boilerplate_blocks_removed: int = 0

    @model_validator(mode="after")
    def _format_1_had_one_english_index(self) -> IndexManifest:
        if self.format_version == 1 and "lexical" not in self.model_fields_set:
            self.lexical = [
                LexicalIndex(language=Language.ENGLISH, path=BM25_DIR, stemmer="english")
            ]
        return self

    @classmethod
    def read(cls, index_dir: Path) -> IndexManifest:
        path = index_dir / MANIFEST_NAME
        if not index_dir.is_dir():
            raise IndexMissingError(f"index directory not found: {index_dir}")
        if not path.is_file():
            raise IndexMissingError(f"{index_dir} is not an index (no {MANIFEST_NAME})")
        try:
            manifest = cls.model_validate_json(path.read_text())
        except ValueError as exc:
            raise IncompatibleIndexError(f"{path} is not a valid index manifest: {exc}") from exc
        if manifest.format_version not in READABLE_VERSIONS:
            readable = ", ".join(str(v) for v in sorted(READABLE_VERSIONS))
            raise IncompatibleIndexError(
                f"index format {manifest.format_version} is not supported "
                f"(this version reads formats {readable}); rebuild the index"
            )
        if not manifest.lexical:
            raise IncompatibleIndexError(f"{path} lists no lexical index; rebuild the index")
        if manifest.format_version < FORMAT_VERSION:
            log.warning(
                "%s is an index of format %d (English stemming only); rebuild it to search "
                "Indonesian with Indonesian stemming",
                index_dir,
                manifest.format_version,
            )
        return manifest
