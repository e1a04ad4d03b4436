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
    scores = {row["label"]: row for row in json.loads(result.stdout)}
    assert scores["bm25 only"]["recall_at_1"] == 1.0
    assert {"dense only", "rrf", "hybrid 0.6/0.4", "sweep w_sem=0.0"} <= set(scores)


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
