"""The index manifest: the one description of an index directory, written last.

An index directory holds ``manifest.json``, ``chunks.jsonl`` (the chunk texts and where
they come from), ``embeddings.npy`` (L2-normalised float32, row i = chunk i), ``chroma/``
(the persistent HNSW index), ``bm25/`` (the bm25s index) and, for torch-free querying,
``embedder/<model>.gguf``. Every path inside is relative, so the directory can be moved or
shipped in an update bundle as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from kb_builder.chunking import ChunkingParams
from kb_builder.errors import IncompatibleIndexError, IndexMissingError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "DocumentRecord",
    "EmbeddingInfo",
    "HnswParams",
    "IndexManifest",
    "SkippedRecord",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CHUNKS_NAME = "chunks.jsonl"
EMBEDDINGS_NAME = "embeddings.npy"
CHROMA_DIR = "chroma"
BM25_DIR = "bm25"
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


class DocumentRecord(BaseModel):
    source: str
    sha256: str
    title: str
    chunks: int
    pages: int | None = None


class SkippedRecord(BaseModel):
    source: str
    reason: str


class IndexManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    embedding: EmbeddingInfo
    chunking: ChunkingParams
    hnsw: HnswParams
    bm25: dict[str, str] = Field(default_factory=dict)
    document_count: int
    chunk_count: int
    documents: list[DocumentRecord]
    skipped: list[SkippedRecord] = Field(default_factory=list)
    boilerplate_blocks_removed: int = 0

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
        if manifest.format_version != FORMAT_VERSION:
            raise IncompatibleIndexError(
                f"index format {manifest.format_version} is not supported "
                f"(this version reads format {FORMAT_VERSION}); rebuild the index"
            )
        return manifest
