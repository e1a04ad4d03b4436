"""A bundle built from a training export folder is checked against its export.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skinspector.core.storage import file_sha256
from tests.updates.helpers import card, fake_model_files
from updates.build import build_bundle
from updates.errors import BundleInputError


def _export(folder: Path, prompts: dict[str, str] | None = None) -> tuple[Path, Path, Path]:
    model, mmproj, index = fake_model_files(folder)
    manifest = {
        "format": 1,
        "quant": "Q4_K_M",
        "model": model.name,
        "mmproj": mmproj.name,
        "provenance": {"prompts": prompts or {}},
        "files": {
            p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in (model, mmproj)
        },
    }
    (folder / "export.json").write_text(json.dumps(manifest))
    return model, mmproj, index


def test_an_intact_export_builds(tmp_path: Path) -> None:
    model, mmproj, index = _export(tmp_path / "export")
    out = tmp_path / "bundle"
    build_bundle(
        model=model, mmproj=mmproj, index=index, card=card(tmp_path), version="1.0.0", out=out
    )
    assert (out / "bundle.json").is_file()


def test_a_changed_export_file_is_not_shipped(tmp_path: Path) -> None:
    model, mmproj, index = _export(tmp_path / "export")
    data = bytearray(mmproj.read_bytes())
    data[-1] ^= 0xFF
    mmproj.write_bytes(bytes(data))
    out = tmp_path / "bundle"
    with pytest.raises(BundleInputError, match=r"does not verify.*SHA-256"):
        build_bundle(
            model=model, mmproj=mmproj, index=index, card=card(tmp_path), version="1.0.0", out=out
        )
    assert not out.exists()


def test_a_model_trained_on_another_prompt_version_is_refused_at_load(tmp_path: Path) -> None:
    from edge_server.bundle import ActiveBundle
    from skinspector.core.errors import ModelFileError
    from skinspector.core.prompt import PROMPTS

    current = {name: spec.version for name, spec in PROMPTS.items()}
    for name, prompts, refused in (
        ("current", current, False),
        ("old", {**current, "findings": "2020-01-01.1"}, True),
    ):
        model, mmproj, index = _export(tmp_path / f"export-{name}", prompts)
        out = tmp_path / f"bundle-{name}"
        build_bundle(
            model=model, mmproj=mmproj, index=index, card=card(tmp_path), version="1.0.0", out=out
        )
        bundle = ActiveBundle.open(out)
        assert bundle.manifest.prompts == prompts  # carried from export.json
        if refused:
            with pytest.raises(ModelFileError, match=r"findings \(trained on 2020-01-01\.1"):
                bundle.check_prompts()
            bundle.check_prompts(allow_mismatch=True)  # warns instead
        else:
            bundle.check_prompts()
