"""English and Bahasa Indonesia as languages of the index: detection, the glossary, the
per-language lexical indexes, the semantic-side floor, per-entry diversity, old indexes."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kb_builder.chunking import Chunk
from kb_builder.errors import IncompatibleIndexError, IndexMissingError, KbError, QueryError
from kb_builder.evaluation import EvalQuery, evaluate, format_report, load_queries
from kb_builder.index import build_index
from kb_builder.language import Glossary, Language, default_glossary, detect_language
from kb_builder.manifest import IndexManifest
from kb_builder.retriever import HybridRetriever, LexicalQuery, Method, RetrievalParams
from skinspector.core.errors import InputError
from tests.kb_builder.corpus import make_bilingual_corpus, make_corpus


class HashEmbedder:
    """A small real embedder (bytes of the text as a vector) that records what it saw."""

    backend = "test"
    model_id = "hash-16"
    dimension = 16

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += texts
        rows = [np.frombuffer(t.encode().ljust(64, b"\0")[:64], dtype=np.uint8)[:16] for t in texts]
        out = np.asarray(rows, dtype=np.float32) + 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


# ---------------------------------------------------------------- no index needed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("itchy red ring on my thigh that keeps getting wider", Language.ENGLISH),
        ("kulit di sela jari gatal sekali kalau malam", Language.INDONESIAN),
        ("bercak putih bersisik di punggung", Language.INDONESIAN),
        ("anaknya demam lalu keluar bintil berair", Language.INDONESIAN),
        ("BCC", None),
        ("panu", None),
        ("", None),
    ],
)
def test_detect_language(text: str, expected: Language | None) -> None:
    assert detect_language(text) == expected


def test_glossary_matches_stems_and_phrases() -> None:
    glossary = default_glossary()
    assert len(glossary) > 100
    words = glossary.translate("kulitnya bersisik dan gatal-gatal").split()
    assert {"skin", "scaly", "itch"} <= set(words)
    assert len(words) == len(set(words))  # each word once
    assert "mole" in glossary.translate("tahi lalat saya berubah").split()
    assert glossary.translate("itchy red ring") == ""  # English words are not entries


def test_glossary_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KbError, match="glossary not found"):
        Glossary.load(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "gatal", "en": "itch"}\n{"id": "gatal"}\n')
    with pytest.raises(KbError, match=r"bad.jsonl:2"):
        Glossary.load(bad)
    long = tmp_path / "long.jsonl"
    long.write_text('{"id": "tiga kata sini", "en": "x"}\n')
    with pytest.raises(KbError, match="one or two words"):
        Glossary.load(long)


def test_eval_query_language() -> None:
    assert EvalQuery(query="q", expected="e", kind="lay_id").language_label == "id"
    assert EvalQuery(query="q", expected="e", kind="acronym", language="en").language_label == "en"
    assert EvalQuery(query="q", expected="e", kind="acronym").language_label == "unspecified"


def test_bad_query_file_language(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "x", "expected": "y", "language": "fr"}\n')
    with pytest.raises(KbError, match=r"q\.jsonl:1"):
        load_queries(path)


# ---------------------------------------------------------------- real indexes


@pytest.fixture(scope="module")
def bilingual_index(tmp_path_factory: pytest.TempPathFactory, demo_embedder) -> Path:  # type: ignore[no-untyped-def]
    root = make_bilingual_corpus(tmp_path_factory.mktemp("bilingual") / "docs")
    out = tmp_path_factory.mktemp("bilingual-idx") / "index"
    build_index([root], out, demo_embedder, progress=False)
    return out


@pytest.mark.slow
def test_manifest_lists_both_lexical_indexes(bilingual_index: Path) -> None:
    manifest = IndexManifest.read(bilingual_index)
    assert manifest.format_version == 2
    assert [(i.language, i.stemmer) for i in manifest.lexical] == [
        (Language.ENGLISH, "english"),
        (Language.INDONESIAN, "indonesian"),
    ]
    assert all((bilingual_index / i.path).is_dir() for i in manifest.lexical)
    assert manifest.embedding.languages == [Language.ENGLISH]  # the demo MiniLM profile


@pytest.mark.slow
def test_indonesian_stemming_finds_affixed_forms(bilingual_index: Path) -> None:
    """ "sisiknya merah" shares no surface word with "bersisik ... kemerahan": only the
    Indonesian-stemmed index matches it."""
    params = RetrievalParams(method=Method.BM25, glossary=False)
    retriever = HybridRetriever(bilingual_index, params=params)
    assert retriever.search("sisiknya merah", 3, language="en") == []
    hits = retriever.search("sisiknya merah", 3)  # detected as Indonesian
    assert hits[0].source == "kurap.md"
    assert hits[0].bm25 > 0


@pytest.mark.slow
def test_plan_by_language(bilingual_index: Path) -> None:
    retriever = HybridRetriever(bilingual_index)
    language, plan = retriever.plan("rough raised bump on the finger")
    assert language is Language.ENGLISH
    assert plan == [LexicalQuery(Language.ENGLISH, "rough raised bump on the finger")]
    language, plan = retriever.plan("kutil kasar di jari")
    assert language is Language.INDONESIAN
    assert plan[0] == LexicalQuery(Language.INDONESIAN, "kutil kasar di jari")
    assert plan[1].language is Language.ENGLISH
    assert {"wart", "rough", "finger"} <= set(plan[1].text.split())
    _, unknown = retriever.plan("panu")
    assert [q.language for q in unknown] == [
        Language.ENGLISH,
        Language.INDONESIAN,
        Language.ENGLISH,  # the glossary translation
    ]
    with pytest.raises(QueryError, match="unknown query language 'fr'") as caught:
        retriever.search("x", 3, language="fr")
    assert isinstance(caught.value, InputError)


@pytest.mark.slow
def test_glossary_lets_indonesian_reach_english_entries(bilingual_index: Path) -> None:
    query = "kutil kasar di jari tangan"
    with_glossary = HybridRetriever(bilingual_index, params=RetrievalParams(method=Method.BM25))
    without = HybridRetriever(
        bilingual_index, params=RetrievalParams(method=Method.BM25, glossary=False)
    )
    assert [h.source for h in without.search(query, 3)] == []
    assert with_glossary.search(query, 3)[0].source == "viral-wart.md"


@pytest.mark.slow
def test_floor_never_drops_a_lexical_match(bilingual_index: Path) -> None:
    """With an English embedder an Indonesian chunk's cosine is low; the floor keeps it
    because BM25 matched it, and under --method bm25 there is no floor at all."""
    query = "bercak kemerahan bersisik gatal"
    strict = RetrievalParams(min_cosine=0.99)
    retriever = HybridRetriever(bilingual_index, params=strict)
    hits = retriever.search(query, 5)
    assert hits
    assert hits[0].source == "kurap.md"
    assert hits[0].cosine < 0.99
    assert hits[0].bm25 > 0
    assert all(h.bm25 > 0 for h in hits)  # every dense-only candidate was under the floor
    bm25_only = retriever.search(query, 5, strict.model_copy(update={"method": Method.BM25}))
    assert bm25_only
    assert bm25_only[0].source == "kurap.md"
    dense = retriever.search(query, 5, strict.model_copy(update={"method": Method.DENSE}))
    assert dense == []  # the dense side alone is floored


@pytest.mark.slow
def test_semantic_side_only_for_covered_languages(
    bilingual_index: Path, demo_embedder, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    query = "bercak kemerahan bersisik gatal"
    english_only = HybridRetriever(bilingual_index, params=RetrievalParams(min_cosine=-1))
    pool = english_only.candidates(query)
    assert pool.language is Language.INDONESIAN
    assert not pool.semantic_counts
    for hit in english_only.rank(pool, 5):
        assert hit.score == pytest.approx(hit.lexical)

    root = make_bilingual_corpus(tmp_path / "docs")
    both = tmp_path / "both"
    report = build_index(
        [root],
        both,
        demo_embedder,
        embedder_languages=[Language.ENGLISH, Language.INDONESIAN],
        progress=False,
    )
    assert report.manifest.embedding.languages == [Language.ENGLISH, Language.INDONESIAN]
    assert "dense side used for queries in: en, id" in report.summary()
    covered = HybridRetriever(both, params=RetrievalParams(min_cosine=-1))
    pool = covered.candidates(query)
    assert pool.semantic_counts
    hits = covered.rank(pool, 5)
    assert any(h.score != pytest.approx(h.lexical) for h in hits)


@pytest.mark.slow
def test_prefixes_are_recorded_and_used(tmp_path: Path) -> None:
    root = make_bilingual_corpus(tmp_path / "docs")
    embedder = HashEmbedder()
    build_index(
        [root],
        tmp_path / "idx",
        embedder,
        query_prefix="query: ",
        passage_prefix="passage: ",
        progress=False,
    )
    manifest = IndexManifest.read(tmp_path / "idx")
    assert (manifest.embedding.query_prefix, manifest.embedding.passage_prefix) == (
        "query: ",
        "passage: ",
    )
    assert embedder.seen
    assert all(text.startswith("passage: ") for text in embedder.seen)
    stored = np.load(tmp_path / "idx" / "embeddings.npy")
    with (tmp_path / "idx" / "chunks.jsonl").open() as handle:
        record = json.loads(handle.readline())
    chunk = Chunk(
        record["id"], record["source"], record["title"], record["heading"], None, record["text"]
    )
    assert np.allclose(stored[0], embedder.embed(["passage: " + chunk.indexed_text])[0])
    retriever = HybridRetriever(tmp_path / "idx", embedder=embedder)
    embedder.seen.clear()
    retriever.search("rough papule", 2)
    assert embedder.seen == ["query: rough papule"]


@pytest.mark.slow
def test_one_entry_cannot_fill_the_top_k(starter_index: Path) -> None:
    """The issue's example: five naevus chunks and no melanoma, before the cap."""
    query = "dark mole that changed colour and bleeds"
    capped = HybridRetriever(starter_index).search(query, 5)
    per_source = Counter(h.source for h in capped)
    assert max(per_source.values()) <= 2
    assert "melanoma.md" in per_source
    uncapped = HybridRetriever(starter_index, params=RetrievalParams(max_per_entry=1000))
    assert max(Counter(h.source for h in uncapped.search(query, 5)).values()) > 2


@pytest.mark.slow
def test_entry_is_a_top_level_section(tmp_path: Path, demo_embedder) -> None:  # type: ignore[no-untyped-def]
    """The cap is per entry, not per file: a file holding two entries (two top-level
    headings, as a PDF's sections are) gives each its own allowance."""
    root = tmp_path / "docs"
    root.mkdir()
    sections = "\n\n".join(
        f"# Condition {name}\n\n"
        + "\n\n".join(f"## Part {i}\nItchy scaly rash {i}." for i in range(4))
        for name in ("A", "B")
    )
    (root / "book.md").write_text(sections)
    build_index([root], tmp_path / "idx", demo_embedder, progress=False)
    params = RetrievalParams(max_per_entry=1, method=Method.BM25)
    hits = HybridRetriever(tmp_path / "idx", params=params).search("itchy scaly rash", 5)
    assert sorted(h.heading.split(" > ")[0] for h in hits if h.heading) == [
        "Condition A",
        "Condition B",
    ]


@pytest.mark.slow
def test_format_1_index_still_loads(
    bilingual_index: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An index written before Indonesian stemming: one English bm25/, format 1, no
    lexical list, no embedder languages or prefixes. It loads and answers, English-only."""
    old = tmp_path / "old"
    shutil.copytree(bilingual_index, old)
    shutil.rmtree(old / "bm25-id")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["bm25"] = {"stemmer": "english (PyStemmer)", "stopwords": "english + bahasa indonesia"}
    for key in ("lexical",):
        del manifest[key]
    for key in ("languages", "query_prefix", "passage_prefix"):
        del manifest["embedding"][key]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        retriever = HybridRetriever(old)
    assert "rebuild it" in caplog.text
    assert retriever.languages == [Language.ENGLISH]
    assert retriever.search("rough raised papule with black dots", 1)[0].source == "viral-wart.md"
    _, plan = retriever.plan("kutil kasar di jari")
    assert {q.language for q in plan} == {Language.ENGLISH}  # Indonesian falls back
    assert retriever.search("kutil kasar di jari", 1)[0].source == "viral-wart.md"
    shutil.rmtree(old / "bm25")
    with pytest.raises(IndexMissingError, match="bm25 is missing"):
        HybridRetriever(old)


@pytest.mark.slow
def test_manifest_without_lexical_indexes_is_refused(bilingual_index: Path, tmp_path: Path) -> None:
    broken = tmp_path / "idx"
    shutil.copytree(bilingual_index, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["lexical"] = []
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndexError, match="rebuild the index"):
        HybridRetriever(broken)
    manifest["lexical"] = [{"language": "en", "path": "../elsewhere", "stemmer": "english"}]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndexError, match="not a valid index manifest"):
        HybridRetriever(broken)
    manifest["lexical"] = [{"language": "en", "path": "bm25", "stemmer": "klingon"}]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndexError, match=r"'klingon'.*rebuild the index"):
        HybridRetriever(broken)


@pytest.mark.slow
def test_evaluation_groups_by_language_and_kind(bilingual_index: Path) -> None:
    queries = [
        EvalQuery(query="kutil kasar di jari", expected="viral-wart", kind="lay_id"),
        EvalQuery(query="bercak kemerahan bersisik", expected="kurap", kind="lay_id"),
        EvalQuery(query="rough papule with black dots", expected="viral-wart", kind="lay_en"),
        EvalQuery(query="cool a burn under running water", expected="minor-burn", kind="clin_en"),
    ]
    report = evaluate(HybridRetriever(bilingual_index), queries, weights=(0.0,), progress=False)
    assert report.groups == [
        "all",
        "language=en",
        "language=id",
        "kind=clin_en",
        "kind=lay_en",
        "kind=lay_id",
    ]
    assert report.get("bm25 only", "language=id").queries == 2
    assert report.get("bm25 only", "language=id").recall_at_1 == 1.0
    assert report.detection == {"en": (2, 2), "id": (2, 2)}
    assert 1 <= report.get("hybrid 0.2/0.8").entries_at_5 <= 3
    text = format_report(report)
    assert "language=id (2 queries)" in text
    assert "kind=clin_en (1 queries)" in text
    with pytest.raises(KbError, match="repeats a weight"):
        evaluate(HybridRetriever(bilingual_index), queries, weights=(0.2, 0.2), progress=False)


@pytest.mark.slow
def test_corpus_index_still_answers_english(tmp_path: Path, demo_embedder) -> None:  # type: ignore[no-untyped-def]
    root = make_corpus(tmp_path / "docs")
    build_index([root], tmp_path / "idx", demo_embedder, progress=False)
    hits = HybridRetriever(tmp_path / "idx").search("honey-coloured crusts around the nose", 1)
    assert hits[0].source == "impetigo.pdf"
