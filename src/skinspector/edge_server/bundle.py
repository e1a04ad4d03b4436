"""Which model + index bundle the server runs: the configured one, the active one in the
data directory, or the demo bundle (tiny random model + starter knowledge base)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from skinspector.core.bundle_manifest import BundleManifest
from skinspector.core.errors import ModelFileError
from skinspector.core.gguf import check_gguf

__all__ = ["DEMO_WARNING", "ActiveBundle", "ensure_demo_bundle", "resolve_bundle"]

log = logging.getLogger(__name__)

DEMO_WARNING = (
    "DEMO MODE: no model bundle is installed, so this box runs the built-in demo model. "
    "It has random weights: its output is random text and must not be used for patients."
)
ACTIVE_POINTER = "active.json"


@dataclass(frozen=True, slots=True)
class ActiveBundle:
    root: Path
    manifest: BundleManifest

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def demo(self) -> bool:
        return self.manifest.demo

    @property
    def model(self) -> Path:
        return check_gguf(self.root / self.manifest.model, "language model")

    @property
    def mmproj(self) -> Path:
        return check_gguf(self.root / self.manifest.mmproj, "vision projector")

    @property
    def index(self) -> Path | None:
        return self.root / self.manifest.index if self.manifest.index else None

    @classmethod
    def open(cls, root: Path) -> ActiveBundle:
        return cls(root, BundleManifest.read(root))


def resolve_bundle(data_dir: Path, bundle_dir: Path | None, cache_dir: Path) -> ActiveBundle:
    """``bundle_dir`` if given; else ``<data_dir>/bundles/active.json``'s target; else demo."""
    if bundle_dir is not None:
        return ActiveBundle.open(bundle_dir)
    pointer = data_dir / "bundles" / ACTIVE_POINTER
    if pointer.is_file():
        target = json.loads(pointer.read_text())["bundle"]
        return ActiveBundle.open(data_dir / "bundles" / target)
    log.warning(DEMO_WARNING)
    return ActiveBundle.open(ensure_demo_bundle(cache_dir))


def ensure_demo_bundle(cache_dir: Path) -> Path:
    """Build (once) a bundle of the tiny random VLM and the starter-KB index.

    Needs the maintainer extras (torch for the tiny model and the GGUF converter); a clinic
    box without them must be given a real bundle.
    """
    try:
        from skinspector.kb_builder.embedding import (
            DEMO_MODEL_ID,
            LlamaCppEmbedder,
            ensure_demo_gguf,
        )
        from skinspector.kb_builder.index import build_index
        from skinspector.training.tiny_model import ensure_tiny_model
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise ModelFileError(
            "no bundle is installed and the demo bundle cannot be built here (it needs the "
            "'train' and 'kb' extras); install a bundle or pass --bundle"
        ) from exc
    tiny = ensure_tiny_model(cache_dir)
    embedder_gguf = ensure_demo_gguf(cache_dir)
    key = f"{tiny.root.name}-{embedder_gguf.parent.name}"
    root = cache_dir / "demo-bundles" / key
    if (root / "bundle.json").is_file():
        return root
    starter = Path(__file__).resolve().parents[1] / "kb_builder" / "data" / "starter_kb"
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        shutil.copyfile(tiny.model, staging / tiny.model.name)
        shutil.copyfile(tiny.mmproj, staging / tiny.mmproj.name)
        embedder = LlamaCppEmbedder(embedder_gguf, DEMO_MODEL_ID)
        try:
            build_index([starter], staging / "index", embedder, progress=False)
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
