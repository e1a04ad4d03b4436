"""``skinspector kb`` end to end through the CLI, with the real GGUF embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinspector.cli import cli
from tests.kb_builder.corpus import make_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, demo_embedder_gguf: Path) -> Path:
    root = make_corpus(tmp_path_factory.mktemp("docs") / "docs")
    out = tmp_path_factory.mktemp("cli-index") / "index"
    result = CliRunner().invoke(
        cli,
        [
            "kb",
            "build",
            str(root),
            "--out",
            str(out),
            "--model",
            str(demo_embedder_gguf),
            "--model-id",
            "minilm",
            "--chunk-size",
            "400",
            "--overlap",
            "50",
            "--embedder-languages",
            "en,id",
            "--query-prefix",
            "q: ",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "documents: 4 indexed, 3 skipped" in result.output
    assert "skipped locked.pdf" in result.output
    return out


def test_build_writes_manifest(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["chunking"] == {"size": 400, "overlap": 50}
    assert manifest["embedding"]["model_id"] == "minilm"
    assert manifest["embedding"]["languages"] == ["en", "id"]
    assert manifest["embedding"]["query_prefix"] == "q: "
    assert [i["language"] for i in manifest["lexical"]] == ["en", "id"]


def test_query_json(built: Path) -> None:
    result = CliRunner().invoke(
        cli, ["kb", "query", str(built), "kudis gatal malam", "-k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["source"] == "scabies.md"
    assert set(hits[0]) >= {
        "chunk_id",
        "text",
        "source",
        "page",
        "heading",
        "score",
        "semantic",
        "lexical",
        "cosine",
    }


def test_query_text_output(built: Path) -> None:
    result = CliRunner().invoke(cli, ["kb", "query", str(built), "honey crusts", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert "impetigo.pdf p.1" in result.output


def test_eval_with_query_file(built: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"query": "kudis", "expected": "scabies", "kind": "lay_id"}\n'
        '{"query": "panu", "expected": "tinea-versicolor", "kind": "lay_id"}\n'
    )
    result = CliRunner().invoke(cli, ["kb", "eval", str(built), str(queries), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    scores = {row["label"]: row for row in data["scores"] if row["group"] == "all"}
    assert scores["bm25 only"]["recall_at_1"] == 1.0
    assert {"dense only", "rrf", "hybrid 0.2/0.8", "sweep w_sem=0.0"} <= set(scores)
    groups = {row["group"] for row in data["scores"]}
    assert {"all", "language=id", "kind=lay_id"} <= groups
    assert set(data["language_detection"]) == {"id"}


def test_eval_text_report_per_language(built: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"query": "kudis gatal malam", "expected": "scabies", "kind": "lay_id"}\n'
        '{"query": "honey crusts around the nose", "expected": "impetigo", "kind": "lay_en"}\n'
    )
    result = CliRunner().invoke(
        cli, ["kb", "eval", str(built), str(queries), "--semantic-weight", "0.6"]
    )
    assert result.exit_code == 0, result.output
    for title in ("all queries (2 queries)", "language=en (1 queries)", "kind=lay_id"):
        assert title in result.output
    assert "hybrid 0.6/0.4" in result.output
    assert "query language detected correctly: en 1/1, id 1/1" in result.output


def test_eval_queries_and_unseen_conflict(built: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "kudis", "expected": "scabies"}\n')
    result = CliRunner().invoke(cli, ["kb", "eval", str(built), str(queries), "--unseen"])
    assert result.exit_code == 2
    assert "not both" in result.output


def test_query_reports_language_and_plan(built: Path) -> None:
    result = CliRunner().invoke(cli, ["kb", "query", str(built), "kulit bersisik halus", "-k", "1"])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("language: id | id index: kulit bersisik halus; en index: ")
    assert "scaly" in first
    assert "tinea-versicolor.md" in result.output
    forced = CliRunner().invoke(
        cli, ["kb", "query", str(built), "panu", "--language", "en", "--method", "bm25"]
    )
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith("language: en | en index: panu\n")


def test_query_bad_language(built: Path) -> None:
    result = CliRunner().invoke(cli, ["kb", "query", str(built), "x", "--language", "fr"])
    assert result.exit_code == 2
    assert "'fr' is not one of" in result.output


def test_build_bad_embedder_language(tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs")
    result = CliRunner().invoke(
        cli,
        ["kb", "build", str(docs), "--out", str(tmp_path / "o"), "--embedder-languages", "en,xx"],
    )
    assert result.exit_code == 2
    assert "unknown language (known: en, id)" in result.output
    assert not (tmp_path / "o").exists()


def test_query_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["kb", "query", str(tmp_path / "none"), "x"])
    assert result.exit_code == 2
    assert "index directory not found" in result.output
    assert "Traceback" not in result.output


def test_build_needs_sources(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["kb", "build", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "at least one SOURCE" in result.output


def test_bad_query_file(built: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    result = CliRunner().invoke(cli, ["kb", "eval", str(built), str(bad)])
    assert result.exit_code == 1
    assert "bad.jsonl:1" in result.output
