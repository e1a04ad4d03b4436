from __future__ import annotations

from pathlib import Path

import pytest

from kb_builder.chunking import ChunkingParams, chunk_document
from kb_builder.errors import DocumentError
from kb_builder.ingest import (
    Block,
    Document,
    clean_text,
    discover,
    drop_boilerplate,
    load_document,
    remove_repeated_margins,
)
from tests.kb_builder.corpus import make_corpus, write_pdf


def test_clean_text_joins_hyphenation_and_whitespace() -> None:
    assert clean_text("derma-\ntology  is\n  fun\u00ad") == "dermatology is fun"
    assert clean_text("well-\nknown") == "wellknown"  # a limitation: see docstring
    assert clean_text("a -\nb") == "a - b"  # a dash with spaces is not a hyphenation


def test_repeated_margins_removed_with_page_numbers() -> None:
    pages = [["Handbook", "body one", f"Page {n}"] for n in range(1, 6)]
    pages[2].insert(1, "Handbook")  # in the body: kept
    cleaned = remove_repeated_margins(pages)
    assert cleaned[0] == ["body one"]
    assert "Handbook" in cleaned[2]


def test_markdown_headings_and_lists(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c")
    doc = load_document(root / "scabies.md", "scabies.md")
    assert doc.title == "Scabies"
    headings = {b.heading for b in doc.blocks}
    assert "Scabies > Morphology" in headings
    morph = next(b for b in doc.blocks if b.heading == "Scabies > Morphology")
    assert "burrows in the finger webs" in morph.text
    assert "\n" not in morph.text


def test_pdf_pages_headers_hyphenation(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c")
    doc = load_document(root / "impetigo.pdf", "impetigo.pdf")
    text = " ".join(b.text for b in doc.blocks)
    assert "infection" in text
    assert "cellulitis" in text
    assert "Clinic Handbook" not in text
    assert "Page 2" not in text
    assert doc.pages == 3
    assert {b.page for b in doc.blocks} == {1, 2, 3}


@pytest.mark.parametrize(
    ("name", "reason"),
    [("locked.pdf", "encrypted"), ("broken.pdf", "PDF"), ("empty.md", "no extractable text")],
)
def test_unusable_documents_raise_with_their_name(tmp_path: Path, name: str, reason: str) -> None:
    root = make_corpus(tmp_path / "c")
    with pytest.raises(DocumentError, match=reason) as info:
        load_document(root / name, name)
    assert name in str(info.value)


def test_non_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DocumentError, match="UTF-8"):
        load_document(path, "latin.txt")


def test_discover_recurses_and_filters(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c")
    (root / "sub").mkdir()
    (root / "sub" / "x.md").write_text("# X\n\nbody")
    (root / "image.png").write_bytes(b"\x89PNG")
    names = [name for _, name in discover([root])]
    assert "sub/x.md" in names
    assert "image.png" not in names
    with pytest.raises(DocumentError, match="not found"):
        discover([tmp_path / "missing"])


def test_pdf_with_indonesian_text(tmp_path: Path) -> None:
    write_pdf(tmp_path / "id.pdf", ["Panu adalah infeksi jamur kulit yang umum."])
    doc = load_document(tmp_path / "id.pdf", "id.pdf")
    assert "infeksi jamur" in doc.blocks[0].text


def test_boilerplate_dropped_across_documents() -> None:
    notice = "Starter content pending clinical review."
    docs = [
        Document(f"d{i}.md", "x", f"D{i}", [Block(notice), Block(f"body {i}")]) for i in range(6)
    ]
    assert drop_boilerplate(docs) == 6
    assert all(b.text != notice for d in docs for b in d.blocks)


def _doc(paragraphs: list[str], heading: str = "T > S") -> Document:
    return Document("t.md", "x", "T", [Block(p, None, heading) for p in paragraphs])


def test_chunks_respect_size_overlap_and_sections() -> None:
    words = [f"word{i}" for i in range(600)]
    paragraphs = [" ".join(words[i : i + 40]) + "." for i in range(0, 600, 40)]
    doc = _doc(paragraphs)
    doc.blocks.append(Block("A short other section.", None, "T > Other"))
    params = ChunkingParams(size=500, overlap=80)
    chunks = chunk_document(doc, params)
    assert all(len(c.text) <= params.size + 10 for c in chunks)
    assert chunks[-1].heading == "T > Other"
    assert chunks[-1].text == "A short other section."  # sections never merge
    first, second = chunks[0].text, chunks[1].text
    tail = first[-60:].split(" ", 1)[1]
    assert second.startswith(first[first.find(second.split(" ")[0]) :][:20])
    assert tail in second  # overlap carried over
    # every word survives chunking
    joined = " ".join(c.text for c in chunks)
    assert all(w in joined for w in words)


def test_long_paragraph_split_at_sentences() -> None:
    sentence = "This sentence has exactly seven words. "
    doc = _doc([sentence * 60])
    chunks = chunk_document(doc, ChunkingParams(size=300, overlap=0))
    assert len(chunks) > 5
    assert all(c.text.rstrip().endswith(".") for c in chunks)


def test_chunk_ids_are_stable_and_content_addressed() -> None:
    doc = _doc(["alpha " * 50, "beta " * 50, "gamma " * 50])
    ids = [c.chunk_id for c in chunk_document(doc, ChunkingParams(size=300, overlap=0))]
    again = [c.chunk_id for c in chunk_document(doc, ChunkingParams(size=300, overlap=0))]
    assert ids == again
    assert len(set(ids)) == len(ids)
    edited = _doc(["inserted " * 50, "alpha " * 50, "beta " * 50, "gamma " * 50])
    edited_ids = {c.chunk_id for c in chunk_document(edited, ChunkingParams(size=300, overlap=0))}
    assert set(ids) <= edited_ids  # unchanged text keeps its id


def test_bad_chunking_params() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ChunkingParams(size=200, overlap=150)
