"""``skinspector kb``: build, query and evaluate the knowledge-base index."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kb_builder import starter_kb_dir
from kb_builder.chunking import ChunkingParams
from kb_builder.embedding import (
    DEMO_MODEL_ID,
    Embedder,
    LlamaCppEmbedder,
    SentenceTransformerEmbedder,
    backend_agreement,
    demo_hf_dir,
    ensure_demo_gguf,
)
from kb_builder.language import Language
from kb_builder.manifest import HnswParams
from kb_builder.retriever import RetrievalParams
from skinspector.cli._common import ExistingFile, PathArg, get_settings, translate_errors
from skinspector.core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

STARTER_KB = starter_kb_dir()


def make_embedder(
    settings: Settings, backend: str, model: str | None, model_id: str | None
) -> Embedder:
    """``model`` is a GGUF path (llama-cpp) or an HF id/path (sentence-transformers);
    without it, the demo model (all-MiniLM-L6-v2) is used."""
    if backend == "llama-cpp":
        if model is None:
            click.secho(
                f"No --model: using the demo embedder {DEMO_MODEL_ID} (GGUF).",
                fg="yellow",
                err=True,
            )
            return LlamaCppEmbedder(ensure_demo_gguf(settings.cache_dir), DEMO_MODEL_ID)
        return LlamaCppEmbedder(Path(model), model_id)
    if model is None:
        click.secho(f"No --model: using the demo embedder {DEMO_MODEL_ID}.", fg="yellow", err=True)
        return SentenceTransformerEmbedder(demo_hf_dir(), DEMO_MODEL_ID)
    return SentenceTransformerEmbedder(model, model_id)


def _languages(value: str) -> list[Language]:
    codes = [code.strip().lower() for code in value.split(",") if code.strip()]
    known = ", ".join(language.value for language in Language)
    if not codes:
        raise click.BadParameter(f"name at least one language ({known})")
    try:
        return [Language(code) for code in codes]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: unknown language (known: {known})", param_hint="--embedder-languages"
        ) from None


_DEFAULTS = RetrievalParams()
_LANGUAGE_CHOICE = click.Choice(["auto", *(language.value for language in Language)])


@click.group()
def kb() -> None:
    """Knowledge base: build the hybrid index, query it, evaluate retrieval."""


@kb.command("build")
@click.argument("sources", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=PathArg, required=True, help="Index directory to write.")
@click.option("--starter", is_flag=True, help="Add the bundled starter dermatology KB.")
@click.option(
    "--backend",
    type=click.Choice(["llama-cpp", "sentence-transformers"]),
    default="llama-cpp",
    show_default=True,
    help="Embedding backend.",
)
@click.option(
    "--model",
    default=None,
    help="GGUF file (llama-cpp) or HF model id/path (sentence-transformers). "
    "Default: the demo MiniLM model.",
)
@click.option(
    "--model-id",
    default=None,
    help="Name recorded in the manifest, e.g. NeuML/pubmedbert-base-embeddings.",
)
@click.option(
    "--embedder-gguf",
    type=ExistingFile,
    default=None,
    help="GGUF of the same model to bundle (for sentence-transformers).",
)
@click.option(
    "--embedder-languages",
    default=None,
    metavar="CODES",
    help="Languages the embedder covers, comma-separated (en, id); the dense side counts "
    "only for queries in these. Default: known for the model id, else en.",
)
@click.option(
    "--query-prefix",
    default=None,
    help='Text the embedder expects before a query (E5: "query: "). Default: known for '
    "the model id, else none.",
)
@click.option(
    "--passage-prefix",
    default=None,
    help='Text the embedder expects before a passage (E5: "passage: ").',
)
@click.option("--chunk-size", type=click.IntRange(100, 20000), default=900, show_default=True)
@click.option("--overlap", type=click.IntRange(0, 5000), default=150, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON at the end.")
@click.pass_context
@translate_errors
def build(
    ctx: click.Context,
    sources: tuple[Path, ...],
    out_dir: Path,
    starter: bool,
    backend: str,
    model: str | None,
    model_id: str | None,
    embedder_gguf: Path | None,
    embedder_languages: str | None,
    query_prefix: str | None,
    passage_prefix: str | None,
    chunk_size: int,
    overlap: int,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Ingest SOURCES (PDF, Markdown, text files or folders) into a hybrid index.

    Damaged, encrypted or empty documents are skipped with a warning; the build goes on
    and lists them in the summary and the manifest.
    """
    from kb_builder.index import build_index

    paths = list(sources) + ([STARTER_KB] if starter else [])
    if not paths:
        raise click.UsageError("give at least one SOURCE, or --starter")
    try:
        chunking = ChunkingParams(size=chunk_size, overlap=overlap)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--overlap") from exc
    languages = _languages(embedder_languages) if embedder_languages is not None else None
    embedder = make_embedder(get_settings(ctx), backend, model, model_id)
    report = build_index(
        paths,
        out_dir,
        embedder,
        chunking=chunking,
        hnsw=HnswParams(),
        embedder_gguf=embedder_gguf,
        embedder_languages=languages,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        overwrite=overwrite,
    )
    if as_json:
        click.echo(report.manifest.model_dump_json(indent=2))
    else:
        click.echo(report.summary())


def _retrieval_options(func: F) -> F:
    """--semantic-weight, --min-cosine, --max-per-entry and --no-glossary, shared by
    ``kb query`` and ``kb eval`` (defaults: the retriever's)."""
    for option in reversed(
        [
            click.option(
                "--semantic-weight",
                type=click.FloatRange(0, 1),
                default=_DEFAULTS.semantic_weight,
                show_default=True,
                help="Weight of the semantic side in the fused score.",
            ),
            click.option(
                "--min-cosine",
                type=click.FloatRange(-1, 1),
                default=_DEFAULTS.min_cosine,
                show_default=True,
                help="Cosine floor for dense-only candidates (lexical matches are never dropped).",
            ),
            click.option(
                "--max-per-entry",
                type=click.IntRange(1, 1000),
                default=_DEFAULTS.max_per_entry,
                show_default=True,
                help="At most this many chunks of one knowledge-base entry.",
            ),
            click.option(
                "--no-glossary", is_flag=True, help="Do not add the glossary translation."
            ),
        ]
    ):
        func = option(func)
    return func


@kb.command("query")
@click.argument("index_dir", type=PathArg)
@click.argument("text")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option(
    "--method",
    type=click.Choice(["hybrid", "rrf", "dense", "bm25"]),
    default="hybrid",
    show_default=True,
)
@click.option(
    "--language",
    type=_LANGUAGE_CHOICE,
    default="auto",
    show_default=True,
    help="Language of TEXT; auto detects it (and searches both when it cannot tell).",
)
@_retrieval_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@translate_errors
def query(
    index_dir: Path,
    text: str,
    k: int,
    method: str,
    language: str,
    semantic_weight: float,
    min_cosine: float,
    max_per_entry: int,
    no_glossary: bool,
    as_json: bool,
) -> None:
    """Search INDEX_DIR for TEXT and print the top hits with their scores."""
    from kb_builder.retriever import HybridRetriever, Method

    params = RetrievalParams(
        method=Method(method),
        semantic_weight=semantic_weight,
        min_cosine=min_cosine,
        max_per_entry=max_per_entry,
        glossary=not no_glossary,
    )
    retriever = HybridRetriever(index_dir, params=params)
    chosen = None if language == "auto" else language
    hits = retriever.search(text, k, language=chosen)
    if as_json:
        click.echo(json.dumps([hit._asdict() for hit in hits], indent=2, ensure_ascii=False))
        return
    detected, plan = retriever.plan(text, chosen)
    searched = "; ".join(f"{q.language.value} index: {q.text}" for q in plan)
    click.echo(f"language: {detected.value if detected else 'unknown (both)'} | {searched}")
    if not hits:
        click.echo("no hits (no lexical match and no chunk above the cosine floor)")
    for rank, hit in enumerate(hits, start=1):
        where = hit.source + (f" p.{hit.page}" if hit.page else "")
        click.echo(f"{rank}. [{hit.score:.3f}] {where} | {hit.heading or hit.title}")
        click.echo(
            f"   semantic {hit.semantic:.3f}  lexical {hit.lexical:.3f}  "
            f"cosine {hit.cosine:.3f}  bm25 {hit.bm25:.2f}"
        )
        snippet = " ".join(hit.text.split())
        click.echo(f"   {snippet[:200]}{'...' if len(snippet) > 200 else ''}")


@kb.command("eval")
@click.argument("index_dir", type=PathArg)
@click.argument("queries", type=PathArg, required=False)
@click.option(
    "--unseen",
    is_flag=True,
    help="Use the bundled unseen lay queries instead of the bundled set.",
)
@_retrieval_options
@click.option(
    "--candidates",
    type=click.IntRange(1, 1000),
    default=_DEFAULTS.candidates,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True)
@translate_errors
def evaluate_cmd(
    index_dir: Path,
    queries: Path | None,
    unseen: bool,
    semantic_weight: float,
    min_cosine: float,
    candidates: int,
    max_per_entry: int,
    no_glossary: bool,
    as_json: bool,
) -> None:
    """Recall@1, recall@5, MRR and entries@5 of BM25, dense, hybrid and RRF, plus a weight
    sweep: for all queries, per language and per query kind.

    QUERIES is a JSONL file of {"query", "expected", "kind", "language"}; default: the
    bundled set (or, with --unseen, the bundled unseen lay queries).
    """
    from kb_builder.evaluation import (
        default_queries_path,
        evaluate,
        format_report,
        load_queries,
        scores_json,
        unseen_queries_path,
    )
    from kb_builder.retriever import HybridRetriever

    if queries is not None and unseen:
        raise click.UsageError("give QUERIES or --unseen, not both")
    params = RetrievalParams(
        semantic_weight=semantic_weight,
        min_cosine=min_cosine,
        candidates=candidates,
        max_per_entry=max_per_entry,
        glossary=not no_glossary,
    )
    retriever = HybridRetriever(index_dir, params=params)
    path = queries or (unseen_queries_path() if unseen else default_queries_path())
    loaded = load_queries(path)
    report = evaluate(retriever, loaded)
    if as_json:
        click.echo(scores_json(report))
    else:
        info = retriever.manifest.embedding
        click.echo(
            f"{len(loaded)} queries ({path.name}), index {index_dir} ({info.model_id}, dense "
            f"side for {', '.join(language.value for language in info.languages)}), "
            f"min cosine {min_cosine}, max {max_per_entry} per entry"
        )
        click.echo(format_report(report))


@kb.command("convert-embedder")
@click.argument(
    "hf_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False
)
@click.option("--out", "out_file", type=PathArg, required=True, help="GGUF file to write.")
@click.option("--outtype", type=click.Choice(["f32", "f16"]), default="f16", show_default=True)
@translate_errors
def convert_embedder(hf_dir: Path | None, out_file: Path, outtype: str) -> None:
    """Convert a BERT-style embedding model folder (e.g. PubMedBERT) to GGUF.

    Without HF_DIR it converts the demo model (all-MiniLM-L6-v2). Needs the 'kb' extra.
    """
    from skinspector.core.gguf import convert_hf_to_gguf

    convert_hf_to_gguf(hf_dir or demo_hf_dir(), out_file, mmproj=False, outtype=outtype)
    click.echo(str(out_file))


@kb.command("agreement")
@click.argument("index_dir", type=PathArg)
@click.option("--hf-model", default=None, help="HF id/path (default: the demo model).")
@click.option(
    "--gguf",
    type=ExistingFile,
    default=None,
    help="GGUF of the same model (default: the index's bundled one).",
)
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@translate_errors
def agreement(index_dir: Path, hf_model: str | None, gguf: Path | None, limit: int) -> None:
    """Cosine between sentence-transformers and llama.cpp vectors for the index's chunks."""
    import numpy as np

    from kb_builder.manifest import CHUNKS_NAME, IndexManifest

    manifest = IndexManifest.read(index_dir)
    lines = (index_dir / CHUNKS_NAME).read_text(encoding="utf-8").splitlines()[:limit]
    texts = [json.loads(line)["text"] for line in lines]
    gguf_path = gguf or (index_dir / manifest.embedding.gguf if manifest.embedding.gguf else None)
    if gguf_path is None:
        raise click.UsageError("the index bundles no GGUF; pass --gguf")
    st = SentenceTransformerEmbedder(hf_model or demo_hf_dir())
    cosines = backend_agreement(st, LlamaCppEmbedder(gguf_path), texts)
    click.echo(
        f"{len(texts)} chunks: cosine min {float(np.min(cosines)):.6f}  "
        f"mean {float(np.mean(cosines)):.6f}  max {float(np.max(cosines)):.6f}"
    )
