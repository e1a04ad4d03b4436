"""Bundle files against their manifest: hashing, checking, packing and verified unpacking.

The archive format is a plain (uncompressed) POSIX tar: ``bundle.json`` first, then every
file the manifest lists, in manifest order; regular files only. Unpacking streams the
archive once and refuses, before writing anything outside the destination:

* a first member that is not ``bundle.json`` (or a manifest over 1 MiB, or without ``files``);
* a member that is not a regular file (links, devices, directories are never needed);
* a name that is absolute, climbs out (``..``), is listed twice or not listed at all;
* a size other than the manifest's (an "endless" file is refused from its header, and the
  copy never reads more than the manifest's size), or a SHA-256 other than the manifest's;
* a listed file that never comes.

GGUF and index files do not compress, so the tar is not compressed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from kb_builder.manifest import CHROMA_DIR
from skinspector.core.bundle_manifest import (
    BUNDLE_MANIFEST_NAME,
    BundleFile,
    BundleManifest,
)
from skinspector.core.errors import ModelFileError
from skinspector.core.storage import fsync_dir
from updates.errors import BundleIntegrityError

__all__ = [
    "MAX_MANIFEST_BYTES",
    "archive_manifest",
    "describe_files",
    "hash_file",
    "list_files",
    "pack_archive",
    "runtime_mutable",
    "unpack_archive",
    "verify_archive",
    "verify_directory",
]

MAX_MANIFEST_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024


@contextmanager
def _bar(total: int, desc: str, enabled: bool) -> Iterator[tqdm[None]]:
    bar: tqdm[None] = tqdm(  # type: ignore[assignment]  # no iterable: items are None
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        file=sys.stderr,  # never on stdout: commands print their result (or --json) there
    )
    try:
        yield bar
    finally:
        bar.close()


def hash_file(path: Path, bar: tqdm[None] | None = None) -> tuple[int, str]:
    """(size, SHA-256 hex) of ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return size, digest.hexdigest()


def list_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (POSIX relative paths, sorted), bundle.json aside.

    Symbolic links and special files are refused: a bundle is plain files only.
    """
    found: list[str] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BundleIntegrityError(f"{relative} is a link or special file; not allowed")
        if path.is_file() and relative != BUNDLE_MANIFEST_NAME:
            found.append(relative)
    return found


def describe_files(root: Path, paths: Iterable[str], *, progress: bool = False) -> list[BundleFile]:
    """Size and SHA-256 of each path (builder side)."""
    paths = list(paths)
    total = sum((root / p).stat().st_size for p in paths)
    out = []
    with _bar(total, "hashing", progress) as bar:
        for relative in paths:
            size, digest = hash_file(root / relative, bar)
            out.append(BundleFile(path=relative, size=size, sha256=digest))
    return out


def runtime_mutable(manifest: BundleManifest) -> tuple[str, ...]:
    """Path prefixes the server changes while it runs: ChromaDB rewrites its SQLite file
    and HNSW header when it opens an index. Installation verifies them like every file;
    later checks of an installed bundle only require them to be present."""
    return (f"{manifest.index}/{CHROMA_DIR}/",) if manifest.index else ()


def verify_directory(
    root: Path,
    manifest: BundleManifest,
    *,
    installed: bool = False,
    progress: bool = False,
) -> None:
    """Every listed file is present with its size and SHA-256; nothing else is there.

    ``installed=True`` checks a bundle the server may have run: files under
    :func:`runtime_mutable` prefixes must exist, their content is not compared, and
    files ChromaDB adds beside them are allowed.
    """
    if not manifest.files:
        raise BundleIntegrityError(f"{root}: the manifest lists no files (not a signed bundle)")
    mutable = runtime_mutable(manifest) if installed else ()
    present = set(list_files(root))
    listed = {f.path for f in manifest.files}
    extra = sorted(p for p in present - listed if not p.startswith(mutable))
    if extra:
        raise BundleIntegrityError(
            f"{root}: files the manifest does not list: {', '.join(extra[:5])}"
        )
    total = sum(f.size for f in manifest.files)
    with _bar(total, "verifying", progress) as bar:
        for entry in manifest.files:
            path = root / entry.path
            if not path.is_file():
                raise BundleIntegrityError(f"{root}: {entry.path} is missing")
            if mutable and entry.path.startswith(mutable):
                bar.update(entry.size)
                continue
            if path.stat().st_size != entry.size:
                raise BundleIntegrityError(
                    f"{entry.path}: {path.stat().st_size} bytes, the manifest says {entry.size}"
                )
            _, digest = hash_file(path, bar)
            if digest != entry.sha256:
                raise BundleIntegrityError(f"{entry.path}: SHA-256 differs from the manifest")


def pack_archive(root: Path, out: Path, *, progress: bool = False) -> None:
    """Write the bundle directory ``root`` as a deterministic tar (bundle.json first)."""
    manifest = BundleManifest.read(root)
    verify_directory(root, manifest, progress=progress)
    tmp = out.with_name(f".{out.name}.partial")
    total = sum(f.size for f in manifest.files)
    try:
        with (
            tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar,
            _bar(total, "packing", progress) as bar,
        ):
            names = [BUNDLE_MANIFEST_NAME] + [f.path for f in manifest.files]
            for name in names:
                path = root / name
                info = tarfile.TarInfo(name)
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = 0
                info.uname = info.gname = ""
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
                if name != BUNDLE_MANIFEST_NAME:
                    bar.update(info.size)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
        fsync_dir(out.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        raise BundleIntegrityError(f"unsafe path in the archive: {name!r}")
    return path.as_posix()


def _read_manifest(tar: tarfile.TarFile) -> tuple[BundleManifest, bytes]:
    first = tar.next()
    if first is None or first.name != BUNDLE_MANIFEST_NAME or not first.isreg():
        raise BundleIntegrityError(f"the archive does not start with {BUNDLE_MANIFEST_NAME}")
    if first.size > MAX_MANIFEST_BYTES:
        raise BundleIntegrityError(f"{BUNDLE_MANIFEST_NAME} is over {MAX_MANIFEST_BYTES} bytes")
    handle = tar.extractfile(first)
    assert handle is not None  # a regular file always has a reader
    data = handle.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = BundleManifest.from_bytes(data)
    except ModelFileError as exc:
        raise BundleIntegrityError(str(exc)) from exc
    if not manifest.files:
        raise BundleIntegrityError("the manifest lists no files: not a signed update bundle")
    return manifest, data


def _copy_exact(source: IO[bytes], target: IO[bytes] | None, size: int, bar: tqdm[None]) -> str:
    """Copy exactly ``size`` bytes, hashing them; never read past ``size``."""
    digest = hashlib.sha256()
    left = size
    while left > 0:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            raise BundleIntegrityError("the archive ends in the middle of a file")
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
        left -= len(chunk)
        bar.update(len(chunk))
    return digest.hexdigest()


def unpack_archive(archive: Path, dest: Path, *, progress: bool = False) -> BundleManifest:
    """Verify and unpack ``archive`` into the new directory ``dest`` (files fsynced).

    Raises :class:`BundleIntegrityError` at the first file that does not match the
    manifest; ``dest`` may then hold part of the files and must be discarded.
    """
    dest.mkdir(parents=False, exist_ok=False)
    manifest = _walk(archive, dest, progress)
    for folder in sorted({p.parent for p in dest.rglob("*")}, key=lambda p: -len(p.parts)):
        fsync_dir(folder)
    return manifest


def verify_archive(archive: Path, *, progress: bool = False) -> BundleManifest:
    """Check every file of ``archive`` against its manifest without writing anything."""
    return _walk(archive, None, progress)


def _walk(archive: Path, dest: Path | None, progress: bool) -> BundleManifest:
    try:
        with tarfile.open(archive, "r|") as tar:
            manifest, data = _read_manifest(tar)
            if dest is not None:
                (dest / BUNDLE_MANIFEST_NAME).write_bytes(data)
            expected = {f.path: f for f in manifest.files}
            seen: set[str] = set()
            with _bar(sum(f.size for f in manifest.files), "verifying", progress) as bar:
                while (member := tar.next()) is not None:
                    name = _safe_name(member.name)
                    if not member.isreg():
                        raise BundleIntegrityError(f"{name}: not a regular file")
                    entry = expected.get(name)
                    if entry is None:
                        raise BundleIntegrityError(f"{name}: not listed in the manifest")
                    if name in seen:
                        raise BundleIntegrityError(f"{name}: appears twice in the archive")
                    if member.size != entry.size:
                        raise BundleIntegrityError(
                            f"{name}: {member.size} bytes in the archive, the manifest says "
                            f"{entry.size}"
                        )
                    seen.add(name)
                    source = tar.extractfile(member)
                    assert source is not None
                    if dest is None:
                        digest = _copy_exact(source, None, entry.size, bar)
                    else:
                        path = dest / name
                        path.parent.mkdir(parents=True, exist_ok=True)
                        with path.open("xb") as target:
                            digest = _copy_exact(source, target, entry.size, bar)
                            target.flush()
                            os.fsync(target.fileno())
                    if digest != entry.sha256:
                        raise BundleIntegrityError(f"{name}: SHA-256 differs from the manifest")
            missing = sorted(set(expected) - seen)
            if missing:
                raise BundleIntegrityError(f"the archive lacks listed files: {missing[:5]}")
    except tarfile.TarError as exc:
        raise BundleIntegrityError(f"the bundle archive is damaged: {exc}") from exc
    return manifest


def archive_manifest(archive: Path) -> BundleManifest:
    """Only the manifest of an archive (publishing reads the version from it)."""
    try:
        with tarfile.open(archive, "r|") as tar:
            return _read_manifest(tar)[0]
    except tarfile.TarError as exc:
        raise BundleIntegrityError(f"{archive} is not a bundle archive: {exc}") from exc
