"""Document ingestion: PDF (pymupdf), Markdown and plain text -> cleaned blocks.

Cleaning: words hyphenated across line ends are joined, header and footer lines repeated
across PDF pages are dropped, whitespace is normalised. Each block keeps its page and the
heading it sits under, so every chunk can cite where it came from.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb_builder.errors import DocumentError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Block",
    "Document",
    "clean_text",
    "discover",
    "drop_boilerplate",
    "load_document",
    "remove_repeated_margins",
]

SUPPORTED_SUFFIXES = frozenset({".pdf", ".md", ".markdown", ".txt"})

_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_SPACES = re.compile(r"[ \t\u00a0]+")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph-sized piece of text."""

    text: str
    page: int | None = None
    heading: str | None = None


@dataclass(slots=True)
class Document:
    source: str  # path relative to the source root it was found under
    sha256: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    pages: int | None = None


def clean_text(text: str) -> str:
    """Join hyphenated line breaks, then collapse whitespace inside a block."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ad", "")
    text = _HYPHEN_BREAK.sub(lambda m: m.group(1) + m.group(2), text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return " ".join(line for line in lines if line)


def discover(sources: Sequence[Path]) -> list[tuple[Path, str]]:
    """Files to ingest as (path, display name), directories searched recursively, sorted."""
    found: list[tuple[Path, str]] = []
    for source in sources:
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
                    found.append((path, path.relative_to(source).as_posix()))
        elif source.is_file():
            found.append((source, source.name))
        else:
            raise DocumentError(f"source not found: {source}")
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- Markdown and text


def _markdown_blocks(text: str) -> tuple[str | None, list[Block]]:
    blocks: list[Block] = []
    title: str | None = None
    trail: list[str] = []  # heading path, by level
    paragraph: list[str] = []

    def flush() -> None:
        cleaned = clean_text("\n".join(paragraph))
        if cleaned:
            blocks.append(Block(cleaned, None, " > ".join(trail) or None))
        paragraph.clear()

    in_fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
            continue
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            if level == 1 and title is None:
                title = heading
            del trail[level - 1 :]
            trail.append(heading)
        elif not line.strip():
            flush()
        else:
            stripped = line.lstrip()
            if stripped.startswith(">"):
                stripped = stripped.lstrip("> ")
            if re.match(r"^([-*+]|\d+[.)])\s+", stripped):
                flush()  # a list item is its own paragraph
            paragraph.append(stripped.replace("**", "").replace("__", ""))
    flush()
    return title, blocks


def _text_blocks(text: str) -> list[Block]:
    return [Block(c) for c in (clean_text(p) for p in re.split(r"\n\s*\n", text)) if c]


# ---------------------------------------------------------------- PDF


def _margin_key(line: str) -> str:
    return _DIGITS.sub("#", line.strip().lower())


def remove_repeated_margins(
    pages: list[list[str]], margin: int = 2, min_share: float = 0.5
) -> list[list[str]]:
    """Drop lines in the first/last ``margin`` lines of a page that repeat (digits ignored,
    so page numbers match) on at least ``min_share`` of pages (and on 3 pages or more)."""
    if len(pages) < 3:
        return pages

    def edge(lines: list[str]) -> int:  # short pages: fewer lines count as margin
        return max(1, min(margin, len(lines) // 3))

    counts: Counter[str] = Counter()
    for lines in pages:
        m = edge(lines)
        counts.update({_margin_key(x) for x in lines[:m] + lines[-m:] if x.strip()})
    threshold = max(3, int(len(pages) * min_share + 0.5))
    repeated = {key for key, n in counts.items() if n >= threshold}
    cleaned = []
    for lines in pages:
        keep = []
        m = edge(lines)
        for index, line in enumerate(lines):
            at_edge = index < m or index >= len(lines) - m
            if at_edge and _margin_key(line) in repeated:
                continue
            keep.append(line)
        cleaned.append(keep)
    return cleaned


def _pdf_pages(path: Path) -> tuple[list[list[tuple[str, float]]], int]:
    """Per page, the text blocks with their largest font size."""
    import pymupdf

    try:
        document: Any = pymupdf.open(path)  # type: ignore[no-untyped-call]
    except Exception as exc:  # pymupdf raises its own FileDataError, RuntimeError...
        raise DocumentError(f"{path.name}: not a readable PDF ({exc})") from exc
    with document:
        if document.needs_pass or document.is_encrypted:
            raise DocumentError(f"{path.name}: the PDF is encrypted")
        if document.page_count == 0:
            raise DocumentError(f"{path.name}: the PDF is damaged (no pages)")
        pages: list[list[tuple[str, float]]] = []
        try:
            for page in document:
                blocks: list[tuple[str, float]] = []
                layout: dict[str, Any] = page.get_text("dict")
                for block in layout.get("blocks", []):
                    lines = []
                    size = 0.0
                    for line in block.get("lines", []):
                        spans = line.get("spans", [])
                        lines.append("".join(span.get("text", "") for span in spans))
                        size = max([size, *(span.get("size", 0.0) for span in spans)])
                    text = "\n".join(lines).strip()
                    if text:
                        blocks.append((text, size))
                pages.append(blocks)
        except Exception as exc:
            raise DocumentError(f"{path.name}: the PDF is damaged ({exc})") from exc
        return pages, document.page_count


def _pdf_blocks(path: Path) -> tuple[list[Block], int]:
    raw_pages, count = _pdf_pages(path)
    # Margin detection works on lines; rebuild blocks after dropping repeated ones.
    line_pages = [[line for text, _ in blocks for line in text.split("\n")] for blocks in raw_pages]
    kept_pages = remove_repeated_margins(line_pages)
    # Body font size: the size most characters are set in (a character-weighted median).
    weighted = sorted((size, len(text)) for blocks in raw_pages for text, size in blocks if size)
    total = sum(n for _, n in weighted)
    body_size, running = 0.0, 0
    for size, n in weighted:
        running += n
        if running * 2 >= total:
            body_size = size
            break
    result: list[Block] = []
    heading: str | None = None
    for number, (blocks, kept) in enumerate(zip(raw_pages, kept_pages, strict=True), start=1):
        budget = Counter(kept)
        for text, size in blocks:
            lines = []
            for line in text.split("\n"):
                if budget[line] > 0:
                    budget[line] -= 1
                    lines.append(line)
            cleaned = clean_text("\n".join(lines))
            if not cleaned:
                continue
            is_heading = body_size and size >= body_size * 1.2 and len(cleaned) <= 100
            if is_heading:
                heading = cleaned
            else:
                result.append(Block(cleaned, number, heading))
    return result, count


# ---------------------------------------------------------------- entry point


def load_document(path: Path, source: str) -> Document:
    """Read one file into blocks. Raises ``DocumentError`` for anything unusable."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(f"{source}: unsupported file type {suffix or '(none)'}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{source}: cannot be read ({exc})") from exc
    document = Document(source=source, sha256=_sha256(data), title=path.stem)
    if suffix == ".pdf":
        document.blocks, document.pages = _pdf_blocks(path)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{source}: not UTF-8 text") from exc
        if suffix == ".txt":
            document.blocks = _text_blocks(text)
        else:
            title, document.blocks = _markdown_blocks(text)
            document.title = title or document.title
    if not any(block.text.strip() for block in document.blocks):
        raise DocumentError(f"{source}: no extractable text (empty or scanned?)")
    return document


def drop_boilerplate(documents: Iterable[Document], min_documents: int = 5) -> int:
    """Remove paragraphs that recur verbatim in at least half of the documents (and in
    ``min_documents`` or more), e.g. a notice at the top of every entry. Returns how many
    blocks were removed."""
    documents = list(documents)
    seen: Counter[str] = Counter()
    for document in documents:
        seen.update({block.text for block in document.blocks})
    limit = max(min_documents, (len(documents) + 1) // 2)
    common = {text for text, n in seen.items() if n >= limit}
    removed = 0
    for document in documents:
        before = len(document.blocks)
        document.blocks = [b for b in document.blocks if b.text not in common]
        removed += before - len(document.blocks)
    return removed
