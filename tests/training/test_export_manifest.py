"""``export.json`` is checked when an export is read: sizes and SHA-256 of every file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skinspector.core.errors import ModelFileError
from skinspector.core.export_manifest import find_export_manifest, read_export_manifest
from training.export import read_export


def _copy(exported: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(exported, copy)
    return copy


@pytest.mark.slow
def test_a_real_export_verifies_and_names_its_provenance(exported: Path) -> None:
    manifest = read_export_manifest(exported)
    assert manifest.model.name.endswith("q4_k_m.gguf")
    assert manifest.provenance["split_sha256"]
    assert read_export(exported) == (manifest.model, manifest.mmproj)
    assert find_export_manifest(manifest.model) == exported


@pytest.mark.slow
def test_a_truncated_model_file_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = _copy(exported, tmp_path)
    model, _ = read_export(copy)
    with model.open("r+b") as handle:
        handle.truncate(model.stat().st_size - 1)
    with pytest.raises(ModelFileError, match="incomplete or another file"):
        read_export(copy)


@pytest.mark.slow
def test_a_changed_projector_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = _copy(exported, tmp_path)
    _, mmproj = read_export(copy)
    data = bytearray(mmproj.read_bytes())
    data[-1] ^= 0xFF
    mmproj.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the SHA-256"):
        read_export(copy)
    # Reading without verification (an explicit choice) still works.
    assert read_export(copy, verify=False)[1] == mmproj


def test_a_manifest_without_hashes_or_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lm.gguf").write_bytes(b"GGUF")
    (tmp_path / "mmproj.gguf").write_bytes(b"GGUF")
    (tmp_path / "export.json").write_text(json.dumps({"model": "lm.gguf", "mmproj": "mmproj.gguf"}))
    with pytest.raises(ModelFileError, match="lists no files"):
        read_export_manifest(tmp_path)
    (tmp_path / "export.json").write_text(
        json.dumps(
            {"model": "lm.gguf", "mmproj": "mmproj.gguf",
             "files": {"lm.gguf": {"bytes": 4, "sha256": "0" * 64}}}
        )
    )  # fmt: skip
    with pytest.raises(ModelFileError, match=r"does not list the hash of mmproj\.gguf"):
        read_export_manifest(tmp_path)
    (tmp_path / "export.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="not an export manifest"):
        read_export_manifest(tmp_path)
