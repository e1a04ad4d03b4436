"""``build_index``: documents in, a self-contained, relocatable index directory out."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kb_builder import _stores
from kb_builder.chunking import Chunk, ChunkingParams, chunk_document
from kb_builder.embedding import Embedder, LlamaCppEmbedder, profile_of
from kb_builder.errors import DocumentError, KbError
from kb_builder.ingest import Document, discover, drop_boilerplate, load_document
from kb_builder.language import Language
from kb_builder.manifest import (
    CHROMA_DIR,
    CHUNKS_NAME,
    EMBEDDER_DIR,
    EMBEDDINGS_NAME,
    MANIFEST_NAME,
    DocumentRecord,
    EmbeddingInfo,
    HnswParams,
    IndexManifest,
    SkippedRecord,
    standard_lexical_indexes,
)

__all__ = ["BuildReport", "build_index", "write_index"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BuildReport:
    index_dir: Path
    manifest: IndexManifest
    seconds: float
    skipped: list[SkippedRecord] = field(default_factory=list)

    def summary(self) -> str:
        m = self.manifest
        lines = [
            f"index: {self.index_dir}",
            f"documents: {m.document_count} indexed, {len(m.skipped)} skipped",
            f"chunks: {m.chunk_count} (size {m.chunking.size}, overlap {m.chunking.overlap})",
            f"embedding: {m.embedding.model_id} via {m.embedding.backend}, "
            f"dimension {m.embedding.dimension}"
            + (f", bundled {m.embedding.gguf}" if m.embedding.gguf else ", no bundled GGUF"),
            "dense side used for queries in: "
            + ", ".join(language.value for language in m.embedding.languages)
            + (f" (query prefix {m.embedding.query_prefix!r})" if m.embedding.query_prefix else ""),
            "lexical indexes: " + ", ".join(f"{i.language.value} ({i.stemmer})" for i in m.lexical),
            f"time: {self.seconds:.1f} s",
        ]
        lines += [f"skipped {s.source}: {s.reason}" for s in m.skipped]
        return "\n".join(lines)


def _load_all(
    sources: Sequence[Path], progress: bool
) -> tuple[list[Document], list[SkippedRecord]]:
    documents: list[Document] = []
    skipped: list[SkippedRecord] = []
    files = discover(sources)
    for path, name in tqdm(files, desc="reading", unit="doc", disable=not progress):
        try:
            documents.append(load_document(path, name))
        except DocumentError as exc:
            log.warning("skipping %s: %s", name, exc)
            skipped.append(SkippedRecord(source=name, reason=str(exc)))
    return documents, skipped


def _embed(
    embedder: Embedder, chunks: list[Chunk], batch: int, progress: bool, prefix: str = ""
) -> np.ndarray:
    parts = []
    with tqdm(total=len(chunks), desc="embedding", unit="chunk", disable=not progress) as bar:
        for start in range(0, len(chunks), batch):
            texts = [prefix + c.indexed_text for c in chunks[start : start + batch]]
            parts.append(embedder.embed(texts))
            bar.update(len(texts))
    return np.concatenate(parts).astype(np.float32, copy=False)


def write_index(
    out_dir: Path,
    chunks: list[Chunk],
    vectors: np.ndarray,
    embedding: EmbeddingInfo,
    *,
    chunking: ChunkingParams,
    hnsw: HnswParams,
    documents: list[DocumentRecord],
    skipped: list[SkippedRecord],
    boilerplate_removed: int = 0,
    embedder_gguf: Path | None = None,
    batch: int = 4096,
) -> IndexManifest:
    """Write every index file into the empty directory ``out_dir``; the manifest goes last."""
    if vectors.shape != (len(chunks), embedding.dimension):
        raise KbError(
            f"embeddings have shape {vectors.shape}, expected ({len(chunks)}, "
            f"{embedding.dimension})"
        )
    with (out_dir / CHUNKS_NAME).open("w", encoding="utf-8") as handle:
        for chunk in chunks:
            record = {
                "id": chunk.chunk_id,
                "source": chunk.source,
                "title": chunk.title,
                "heading": chunk.heading,
                "page": chunk.page,
                "text": chunk.text,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    np.save(out_dir / EMBEDDINGS_NAME, vectors)
    lexical = standard_lexical_indexes()
    for index in lexical:
        _stores.build_bm25([c.indexed_text for c in chunks], out_dir / index.path, index.language)
    collection = _stores.chroma_collection(out_dir / CHROMA_DIR, hnsw, create=True)
    _stores.add_embeddings(collection, [c.chunk_id for c in chunks], vectors, batch)
    if embedder_gguf is not None:
        (out_dir / EMBEDDER_DIR).mkdir()
        shutil.copyfile(embedder_gguf, out_dir / EMBEDDER_DIR / embedder_gguf.name)
        embedding = embedding.model_copy(update={"gguf": f"{EMBEDDER_DIR}/{embedder_gguf.name}"})
    manifest = IndexManifest(
        embedding=embedding,
        chunking=chunking,
        hnsw=hnsw,
        bm25={
            "stemmer": ", ".join(f"{i.language}: {i.stemmer} (PyStemmer)" for i in lexical),
            "stopwords": "english + bahasa indonesia",
        },
        lexical=lexical,
        document_count=len(documents),
        chunk_count=len(chunks),
        documents=documents,
        skipped=skipped,
        boilerplate_blocks_removed=boilerplate_removed,
    )
    (out_dir / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
    return manifest


def build_index(
    sources: Sequence[Path],
    out_dir: Path,
    embedder: Embedder,
    *,
    chunking: ChunkingParams | None = None,
    hnsw: HnswParams | None = None,
    embedder_gguf: Path | None = None,
    embedder_languages: Sequence[Language] | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    batch: int = 64,
) -> BuildReport:
    """Ingest, chunk, embed and index ``sources`` into ``out_dir``.

    The index is built in a temporary sibling directory and moved into place at the end,
    so an interrupted build never leaves a half-written index behind. ``embedder_gguf`` (the
    GGUF of the same model) is copied in so clinics can query without torch; with a
    ``LlamaCppEmbedder`` its own file is bundled by default. ``embedder_languages`` (the
    languages the model embeds well), ``query_prefix`` and ``passage_prefix`` (what it
    expects before a query and a passage; E5: "query: ", "passage: ") default to the known
    profile of ``embedder.model_id`` (English-only, no prefixes, for an unknown model) and
    are recorded in the manifest.
    """
    started = time.perf_counter()
    chunking = chunking or ChunkingParams()
    hnsw = hnsw or HnswParams()
    if out_dir.exists() and not overwrite:
        raise KbError(f"{out_dir} already exists (use overwrite to replace it)")
    if embedder_gguf is None and isinstance(embedder, LlamaCppEmbedder):
        embedder_gguf = embedder.path
    documents, skipped = _load_all(sources, progress)
    removed = drop_boilerplate(documents)
    chunks: list[Chunk] = []
    records: list[DocumentRecord] = []
    for document in documents:
        own = chunk_document(document, chunking)
        chunks += own
        records.append(
            DocumentRecord(
                source=document.source,
                sha256=document.sha256,
                title=document.title,
                chunks=len(own),
                pages=document.pages,
            )
        )
    if not chunks:
        raise KbError("no usable text in any source document; nothing to index")
    profile = profile_of(embedder.model_id)
    info = EmbeddingInfo(
        model_id=embedder.model_id,
        backend=embedder.backend,
        dimension=embedder.dimension,
        languages=list(dict.fromkeys(embedder_languages or profile.languages)),
        query_prefix=profile.query_prefix if query_prefix is None else query_prefix,
        passage_prefix=profile.passage_prefix if passage_prefix is None else passage_prefix,
    )
    vectors = _embed(embedder, chunks, batch, progress, info.passage_prefix)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        manifest = write_index(
            staging,
            chunks,
            vectors,
            info,
            chunking=chunking,
            hnsw=hnsw,
            documents=records,
            skipped=skipped,
            boilerplate_removed=removed,
            embedder_gguf=embedder_gguf,
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildReport(out_dir, manifest, time.perf_counter() - started, skipped)
