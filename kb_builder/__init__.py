"""Knowledge base: document ingestion, chunking, embedding, index build and the retriever."""

from __future__ import annotations

from pathlib import Path

from skinspector.core.resources import resource_dir, resource_path

__all__ = ["default_queries_path", "starter_kb_dir"]


def starter_kb_dir() -> Path:
    """The bundled starter knowledge base (Markdown, English and Bahasa Indonesia)."""
    return resource_dir("kb_builder", "data", "starter_kb")


def default_queries_path() -> Path:
    """The bundled retrieval evaluation queries (JSON lines)."""
    return resource_path("kb_builder", "data", "eval_queries.jsonl")
