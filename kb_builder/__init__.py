"""Knowledge base: document ingestion, chunking, embedding, index build and the retriever."""

from __future__ import annotations

from pathlib import Path

from skinspector.core.resources import resource_dir, resource_path

__all__ = ["default_queries_path", "glossary_path", "starter_kb_dir", "unseen_queries_path"]


def starter_kb_dir() -> Path:
    """The bundled starter knowledge base (Markdown, English and Bahasa Indonesia)."""
    return resource_dir("kb_builder", "data", "starter_kb")


def default_queries_path() -> Path:
    """The bundled retrieval evaluation queries (JSON lines)."""
    return resource_path("kb_builder", "data", "eval_queries.jsonl")


def unseen_queries_path() -> Path:
    """Lay queries in both languages written without reading the entries' wording
    (JSON lines), measured apart from the bundled set."""
    return resource_path("kb_builder", "data", "eval_queries_unseen.jsonl")


def glossary_path() -> Path:
    """The Indonesian -> English dermatology lay glossary (JSON lines)."""
    return resource_path("kb_builder", "data", "glossary_id_en.jsonl")
