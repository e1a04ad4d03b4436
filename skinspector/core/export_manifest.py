"""``export.json``: what a GGUF export folder holds, with every file's size and SHA-256 and
the model's provenance (base model, checkpoint, prompt version, training split).

Training writes it (:mod:`training.export`); evaluation and bundle building read it back
through :func:`read_export_manifest`, which checks every listed file's size and hash, so a
truncated copy or a swapped file is caught before a model is scored or shipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinspector.core.errors import ModelFileError
from skinspector.core.storage import file_sha256

__all__ = ["EXPORT_MANIFEST", "ExportManifest", "find_export_manifest", "read_export_manifest"]

EXPORT_MANIFEST = "export.json"


@dataclass(frozen=True, slots=True)
class ExportManifest:
    folder: Path
    model: Path
    mmproj: Path
    quant: str | None
    provenance: dict[str, Any]


def _files(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelFileError(f"{path} lists no files")
    return files


def read_export_manifest(folder: Path, *, verify: bool = True) -> ExportManifest:
    """The manifest of the export ``folder``; with ``verify`` every listed file must exist
    with its recorded size and SHA-256 (:class:`ModelFileError` names the first that does
    not)."""
    path = folder / EXPORT_MANIFEST
    try:
        data = json.loads(path.read_text())
        model, mmproj = folder / str(data["model"]), folder / str(data["mmproj"])
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path} not found") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path} is not an export manifest: {exc}") from exc
    files = _files(data, path)
    for name in (model.name, mmproj.name):
        if name not in files:
            raise ModelFileError(f"{path} does not list the hash of {name}")
    if verify:
        for name, expected in files.items():
            _verify(folder / Path(name).name, expected, path)
    provenance = data.get("provenance")
    return ExportManifest(
        folder=folder,
        model=model,
        mmproj=mmproj,
        quant=data.get("quant"),
        provenance=provenance if isinstance(provenance, dict) else {},
    )


def _verify(file: Path, expected: dict[str, Any], manifest: Path) -> None:
    if not file.is_file():
        raise ModelFileError(f"{file.name}, listed in {manifest}, is missing")
    size = file.stat().st_size
    if size != expected.get("bytes"):
        raise ModelFileError(
            f"{file} is {size} bytes but {manifest.name} records {expected.get('bytes')}: "
            "the copy is incomplete or another file"
        )
    if file_sha256(file) != expected.get("sha256"):
        raise ModelFileError(
            f"{file} does not match the SHA-256 in {manifest.name}: the file was changed "
            "after export"
        )


def find_export_manifest(model_file: Path) -> Path | None:
    """The export folder holding ``model_file`` when it has an ``export.json`` naming it."""
    folder = model_file.parent
    path = folder / EXPORT_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return folder  # present but unreadable: read_export_manifest will say so
    if isinstance(data, dict) and model_file.name in (data.get("model"), data.get("mmproj")):
        return folder
    return None
