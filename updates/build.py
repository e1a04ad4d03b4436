"""``build_bundle``: model + projector + knowledge-base index + card -> one bundle.

Layout of a built bundle (directory, or the same as a tar archive)::

    bundle.json                 the manifest (every file with size and SHA-256)
    MODEL_CARD.md               the maintainer's card, verbatim
    model/<language model>.gguf
    model/<vision projector>.gguf
    index/...                   the knowledge-base index (chunks, ChromaDB, bm25s)
    index/embedder/<embedder>.gguf   the query embedder, so the clinic needs no torch

The index manifest names its bundled embedder; ``--embedder`` must be that same file when
the index already bundles one, and is copied into the index when it does not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kb_builder.errors import KbError
from kb_builder.manifest import EMBEDDER_DIR, MANIFEST_NAME, IndexManifest
from skinspector import __version__
from skinspector.core.bundle_manifest import (
    MANIFEST_FORMAT,
    BundleManifest,
    parse_version,
)
from skinspector.core.errors import ModelFileError
from skinspector.core.export_manifest import find_export_manifest, read_export_manifest
from skinspector.core.gguf import check_gguf
from skinspector.core.settings import SamplingSettings
from updates.card import parse_card
from updates.errors import BundleInputError
from updates.integrity import describe_files, hash_file, list_files, pack_archive

__all__ = ["CARD_NAME", "build_bundle"]

CARD_NAME = "MODEL_CARD.md"


def _check_inputs(model: Path, mmproj: Path, index: Path, card: Path, version: str) -> None:
    if parse_version(version) is None:
        raise BundleInputError(f"--version must be X.Y.Z (e.g. 1.4.0), got {version!r}")
    for path, what in ((model, "language model"), (mmproj, "vision projector")):
        try:
            check_gguf(path, what)
        except ModelFileError as exc:
            raise BundleInputError(str(exc)) from exc
    if model.name == mmproj.name:
        raise BundleInputError("the model and the projector have the same file name")
    if not card.is_file():
        raise BundleInputError(f"model card not found: {card}")
    if not index.is_dir():
        raise BundleInputError(f"index directory not found: {index}")


def _check_export(model: Path, mmproj: Path) -> dict[str, str] | None:
    """Files taken from a training export folder must still match its ``export.json``
    (size and SHA-256 of every file it lists): a truncated copy or a swapped projector
    must not be signed and shipped. Returns the prompts (name -> version) the export says
    the model was trained on, for the bundle manifest."""
    prompts: dict[str, str] | None = None
    for path in (model, mmproj):
        folder = find_export_manifest(path)
        if folder is None:
            continue
        try:
            export = read_export_manifest(folder)
        except ModelFileError as exc:
            raise BundleInputError(f"the export {folder} does not verify: {exc}") from exc
        trained = export.provenance.get("prompts")
        if isinstance(trained, dict):
            prompts = {str(k): str(v) for k, v in trained.items()}
    return prompts


def _copy_index(index: Path, dest: Path, embedder: Path | None) -> str:
    """Copy the index; make sure it bundles the query embedder. Returns its relative path."""
    try:
        manifest = IndexManifest.read(index)
    except KbError as exc:
        raise BundleInputError(str(exc)) from exc
    shutil.copytree(index, dest, symlinks=True)
    bundled = manifest.embedding.gguf
    if bundled is not None:
        if embedder is not None and hash_file(embedder)[1] != hash_file(index / bundled)[1]:
            raise BundleInputError(
                f"--embedder {embedder.name} is not the embedder the index was built with "
                f"({bundled}); rebuild the index with it or leave --embedder out"
            )
        return bundled
    if embedder is None:
        raise BundleInputError(
            "the index bundles no embedder GGUF: pass --embedder with the GGUF of "
            f"{manifest.embedding.model_id}"
        )
    try:
        check_gguf(embedder, "embedder")
    except ModelFileError as exc:
        raise BundleInputError(str(exc)) from exc
    relative = f"{EMBEDDER_DIR}/{embedder.name}"
    (dest / EMBEDDER_DIR).mkdir(exist_ok=True)
    shutil.copyfile(embedder, dest / relative)
    updated = manifest.model_copy(
        update={"embedding": manifest.embedding.model_copy(update={"gguf": relative})}
    )
    (dest / MANIFEST_NAME).write_text(updated.model_dump_json(indent=2))
    return relative


def build_bundle(
    *,
    model: Path,
    mmproj: Path,
    index: Path,
    card: Path,
    version: str,
    out: Path,
    embedder: Path | None = None,
    model_id: str | None = None,
    sampling: SamplingSettings | None = None,
    min_server_version: str | None = None,
    progress: bool = False,
) -> BundleManifest:
    """Build the bundle at ``out``: a directory, or a tar archive if ``out`` ends in .tar.

    Nothing is left at ``out`` unless the whole bundle was built.
    """
    _check_inputs(model, mmproj, index, card, version)
    prompts = _check_export(model, mmproj)
    min_server = min_server_version or __version__
    if parse_version(min_server) is None:
        raise BundleInputError(f"--min-server-version must be X.Y.Z, got {min_server!r}")
    card_text = card.read_text(encoding="utf-8")
    model_card = parse_card(card_text).model_copy(update={"file": CARD_NAME})
    if out.exists():
        raise BundleInputError(f"{out} already exists; choose a new --out")
    archive = out.suffix == ".tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "model").mkdir()
        shutil.copyfile(model, staging / "model" / model.name)
        shutil.copyfile(mmproj, staging / "model" / mmproj.name)
        embedder_path = _copy_index(index, staging / "index", embedder)
        (staging / CARD_NAME).write_text(card_text, encoding="utf-8")
        files = describe_files(staging, list_files(staging), progress=progress)
        manifest = BundleManifest(
            format_version=MANIFEST_FORMAT,
            version=version,
            model_id=model_id or f"skinspector-{version}",
            model=f"model/{model.name}",
            mmproj=f"model/{mmproj.name}",
            index="index",
            embedder=f"index/{embedder_path}",
            sampling=sampling or SamplingSettings(),
            min_server_version=min_server,
            card=model_card,
            prompts=prompts,
            files=files,
        )
        manifest.write(staging)
        if archive:
            pack_archive(staging, out, progress=progress)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
