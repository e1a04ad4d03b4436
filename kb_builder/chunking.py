"""Chunking: blocks -> overlapping chunks that prefer section and paragraph boundaries.

Chunks never span two sections (headings). Inside a section, whole paragraphs are packed
up to ``size`` characters; a paragraph longer than that is split at sentence ends, then
at spaces. Each new chunk of a section starts with up to ``overlap`` characters from the end
of the previous one, cut at a word boundary.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby

from pydantic import BaseModel, Field, model_validator

from kb_builder.ingest import Block, Document

__all__ = ["Chunk", "ChunkingParams", "chunk_document"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class ChunkingParams(BaseModel):
    size: int = Field(900, ge=100, le=20_000, description="Target chunk length, characters.")
    overlap: int = Field(150, ge=0, description="Characters repeated from the previous chunk.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingParams:
        if self.overlap >= self.size // 2:
            raise ValueError("overlap must be less than half the chunk size")
        return self


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str
    source: str
    title: str
    heading: str | None
    page: int | None
    text: str

    @property
    def indexed_text(self) -> str:
        """What the lexical and dense indexes see: where the text sits, then the text."""
        place = (
            self.heading
            if self.heading and self.title in self.heading
            else (" > ".join(p for p in (self.title, self.heading) if p))
        )
        return f"{place}\n{self.text}"


def _pieces(text: str, size: int) -> Iterator[str]:
    """Split one over-long paragraph at sentence ends, then at spaces."""
    if len(text) <= size:
        yield text
        return
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > size:
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            if current:
                yield current
                current = ""
            yield sentence[:cut].strip()
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > size:
            yield current
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        yield current


def _tail(text: str, overlap: int) -> str:
    if overlap <= 0 or len(text) <= overlap:
        return "" if overlap <= 0 else text
    cut = text.find(" ", len(text) - overlap)
    return text[cut + 1 :] if cut != -1 else ""


def _section_texts(blocks: list[Block], params: ChunkingParams) -> Iterator[tuple[str, int | None]]:
    current: list[str] = []
    length = 0
    page: int | None = blocks[0].page
    for block in blocks:
        for piece in _pieces(block.text, params.size - params.overlap):
            if current and length + len(piece) + 2 > params.size:
                text = "\n\n".join(current)
                yield text, page
                carry = _tail(text, params.overlap)
                current, length, page = ([carry] if carry else []), len(carry), block.page
            current.append(piece)
            length += len(piece) + 2
    if current:
        yield "\n\n".join(current), page


def _chunk_id(source: str, heading: str | None, text: str) -> str:
    """Content-addressed: unchanged text under the same heading keeps its id on rebuild."""
    return hashlib.sha256(f"{source}\x00{heading or ''}\x00{text}".encode()).hexdigest()[:20]


def chunk_document(document: Document, params: ChunkingParams | None = None) -> list[Chunk]:
    """Chunks of one document, in reading order, with stable ids."""
    params = params or ChunkingParams()
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for heading, group in groupby(document.blocks, key=lambda b: b.heading):
        blocks = list(group)
        for text, page in _section_texts(blocks, params):
            chunk_id = _chunk_id(document.source, heading, text)
            seen[chunk_id] = seen.get(chunk_id, 0) + 1
            if seen[chunk_id] > 1:  # the same text twice under one heading
                chunk_id = f"{chunk_id}-{seen[chunk_id]}"
            chunks.append(
                Chunk(
                    chunk_id=chunk_id,
                    source=document.source,
                    title=document.title,
                    heading=heading,
                    page=page,
                    text=text,
                )
            )
    return chunks
