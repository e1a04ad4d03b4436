"""Every bundle file against its manifest: building, packing, verified unpacking."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from skinspector.core.bundle_manifest import BundleManifest
from skinspector.core.errors import ModelFileError
from tests.updates.helpers import (
    Member,
    card,
    fake_bundle,
    fake_model_files,
    model_member,
    tar_members,
    write_tar,
)
from updates.build import build_bundle
from updates.errors import BundleInputError, BundleIntegrityError
from updates.integrity import (
    archive_manifest,
    unpack_archive,
    verify_archive,
    verify_directory,
)


def _edited(archive: Path, out: Path, edit: Callable[[list[Member]], list[Member]]) -> Path:
    return write_tar(edit(tar_members(archive)), out)


def test_build_lists_every_file_with_size_and_hash(tmp_path: Path) -> None:
    folder = fake_bundle(tmp_path, "2.3.4", archive=False)
    manifest = BundleManifest.read(folder)
    assert manifest.format_version == 2
    assert manifest.version == "2.3.4"
    assert manifest.card is not None
    assert manifest.intended_use
    assert manifest.sampling is not None
    assert manifest.sampling.top_k == 25
    assert manifest.min_server_version == "0.1.0"
    paths = {f.path for f in manifest.files}
    assert {"model/lm.gguf", "model/mmproj.gguf", "MODEL_CARD.md"} <= paths
    assert manifest.embedder == "index/embedder/emb.gguf"
    assert all(len(f.sha256) == 64 and f.size > 0 for f in manifest.files)
    verify_directory(folder, manifest)
    (folder / "model" / "lm.gguf").write_bytes(b"GGUF tampered")
    with pytest.raises(BundleIntegrityError, match=r"model/lm.gguf: \d+ bytes"):
        verify_directory(folder, manifest)


def test_archive_round_trip(tmp_path: Path) -> None:
    archive = fake_bundle(tmp_path, "1.0.0")
    names = [info.name for info, _ in tar_members(archive)]
    assert names[0] == "bundle.json"
    manifest = unpack_archive(archive, tmp_path / "out")
    verify_directory(tmp_path / "out", manifest)
    assert archive_manifest(archive) == manifest
    assert verify_archive(archive) == manifest


def test_build_refuses_bad_input(tmp_path: Path) -> None:
    model, mmproj, index = fake_model_files(tmp_path / "src")
    common = {"model": model, "mmproj": mmproj, "index": index, "card": card(tmp_path)}
    with pytest.raises(BundleInputError, match=r"X\.Y\.Z"):
        build_bundle(**common, version="1.0", out=tmp_path / "a")
    (tmp_path / "bad.gguf").write_bytes(b"not a model")
    with pytest.raises(BundleInputError, match="not a GGUF"):
        build_bundle(
            **{**common, "model": tmp_path / "bad.gguf"}, version="1.0.0", out=tmp_path / "b"
        )
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF other embedder")
    with pytest.raises(BundleInputError, match="not the embedder the index was built with"):
        build_bundle(**common, embedder=other, version="1.0.0", out=tmp_path / "c")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BundleInputError, match="already exists"):
        build_bundle(**common, version="1.0.0", out=tmp_path / "exists")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "c").exists()


def test_index_without_embedder_gets_the_given_one(tmp_path: Path) -> None:
    model, mmproj, index = fake_model_files(tmp_path / "src")
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["embedding"]["gguf"] = None
    (index / "manifest.json").write_text(json.dumps(manifest))
    (index / "embedder" / "emb.gguf").unlink()
    common = {"model": model, "mmproj": mmproj, "index": index, "card": card(tmp_path)}
    with pytest.raises(BundleInputError, match="pass --embedder"):
        build_bundle(**common, version="1.0.0", out=tmp_path / "a")
    embedder = tmp_path / "pubmedbert.gguf"
    embedder.write_bytes(b"GGUF" + b"\0" * 64)
    built = build_bundle(**common, embedder=embedder, version="1.0.0", out=tmp_path / "b")
    assert built.embedder == "index/embedder/pubmedbert.gguf"
    copied = json.loads((tmp_path / "b" / "index" / "manifest.json").read_text())
    assert copied["embedding"]["gguf"] == "embedder/pubmedbert.gguf"


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("tampered", "SHA-256 differs"),
        ("larger", "bytes in the archive, the manifest says"),
        ("unlisted", "not listed in the manifest"),
        ("symlink", "not a regular file"),
        ("traversal", "unsafe path"),
        ("missing", "lacks listed files"),
        ("duplicate", "appears twice"),
        ("manifest_last", "does not start with bundle.json"),
        ("truncated", "damaged|ends in the middle"),
    ],
)
def test_unpack_refuses(tmp_path: Path, case: str, error: str) -> None:
    archive = fake_bundle(tmp_path, "1.0.0")

    def edit(members: list[Member]) -> list[Member]:
        i = model_member(members)
        info, data = members[i]
        if case == "tampered":
            members[i] = (info, data[:-1] + bytes([data[-1] ^ 1]))
        elif case == "larger":
            members[i] = (info, data + b"\0" * 10_000)
        elif case == "unlisted":
            members.append((tarfile.TarInfo("model/extra.gguf"), b"GGUF"))
        elif case == "symlink":
            link = tarfile.TarInfo("model/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            members.append((link, b""))
        elif case == "traversal":
            members.append((tarfile.TarInfo("../evil"), b"x"))
        elif case == "missing":
            del members[i]
        elif case == "duplicate":
            members.append(members[i])
        elif case == "manifest_last":
            members.append(members.pop(0))
        return members

    bad = _edited(archive, tmp_path / "bad.tar", edit)
    if case == "truncated":
        bad.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(BundleIntegrityError, match=error):
        unpack_archive(bad, tmp_path / "out")
    with pytest.raises(BundleIntegrityError):
        verify_archive(bad)
    assert not (tmp_path.parent / "evil").exists()


def test_legacy_manifest_still_loads(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_text(
        json.dumps(
            {
                "version": "demo-1",
                "model_id": "m",
                "model": "lm.gguf",
                "mmproj": "mm.gguf",
                "index": None,
                "demo": True,
                "created_at": "2025-01-01T00:00:00+00:00",
            }
        )
    )
    manifest = BundleManifest.read(tmp_path)
    assert manifest.format_version == 1
    assert manifest.files == []
    assert manifest.intended_use is None
    with pytest.raises(BundleIntegrityError, match="lists no files"):
        verify_directory(tmp_path, manifest)
    (tmp_path / "bundle.json").write_text(
        json.dumps({**json.loads((tmp_path / "bundle.json").read_text()), "model": "../x"})
    )
    with pytest.raises(ModelFileError, match="inside the bundle"):
        BundleManifest.read(tmp_path)
