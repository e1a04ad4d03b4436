"""Knowledge-base errors, split by who is at fault."""

from __future__ import annotations

from skinspector.core.errors import InputError, SkinspectorError

__all__ = [
    "DocumentError",
    "IncompatibleIndexError",
    "IndexMissingError",
    "KbError",
    "QueryError",
]


class KbError(SkinspectorError):
    """Base class of knowledge-base errors."""


class DocumentError(KbError, InputError):
    """One source document cannot be used (corrupt, encrypted, empty, unsupported).

    The build skips the document, names it in a warning and in the report, and goes on.
    """


class IndexMissingError(KbError, InputError):
    """The index directory does not exist or lacks a file the index needs."""


class IncompatibleIndexError(KbError):
    """The index cannot be queried with this embedder or this code version."""


class QueryError(KbError, InputError):
    """A query the retriever cannot run as asked (e.g. an unknown language code)."""
