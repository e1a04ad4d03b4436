"""Helpers for the update tests: synthetic and real bundles, repositories, attacks on them,
and a clinic server that resolves its bundle from the data directory (hot reload on)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Timestamp

from edge_server.server import start_server
from kb_builder.chunking import ChunkingParams
from kb_builder.manifest import EmbeddingInfo, HnswParams, IndexManifest
from skinspector.core.bundle_manifest import BundleManifest
from skinspector.core.storage import write_atomic
from tests.edge_server.conftest import LiveServer, server_settings
from tests.threaded_loop import serve_in_background
from training.demo_bundle import ensure_demo_bundle
from updates.build import build_bundle
from updates.card import CARD_TEMPLATE
from updates.keys import KeyStore, NamedSigner
from updates.repository import ExpiryPolicy, Repository
from updates.slots import SlotStore

NOW = datetime.now(UTC)


def no_smoke(bundle: Path) -> None:
    del bundle


# --------------------------------------------------------------------------- bundles


def fake_model_files(folder: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """GGUF-looking files (right magic, random bytes) and a minimal index: enough for
    everything but loading a model."""
    folder.mkdir(parents=True, exist_ok=True)
    model, mmproj = folder / "lm.gguf", folder / "mmproj.gguf"
    model.write_bytes(b"GGUF" + os.urandom(4096 + seed))
    mmproj.write_bytes(b"GGUF" + os.urandom(1024))
    index = folder / "index"
    (index / "embedder").mkdir(parents=True, exist_ok=True)
    (index / "embedder" / "emb.gguf").write_bytes(b"GGUF" + os.urandom(512))
    (index / "chunks.jsonl").write_text('{"id": "c1", "text": "scabies"}\n')
    manifest = IndexManifest(
        embedding=EmbeddingInfo(
            model_id="test/embedder", backend="llama-cpp", dimension=8, gguf="embedder/emb.gguf"
        ),
        chunking=ChunkingParams(),
        hnsw=HnswParams(),
        document_count=1,
        chunk_count=1,
        documents=[],
    )
    (index / "manifest.json").write_text(manifest.model_dump_json())
    return model, mmproj, index


def card(folder: Path) -> Path:
    path = folder / "CARD.md"
    if not path.exists():
        path.write_text(CARD_TEMPLATE)
    return path


def fake_bundle(work: Path, version: str, *, archive: bool = True) -> Path:
    """A small signed-bundle-shaped archive (or directory) that cannot run."""
    model, mmproj, index = fake_model_files(work / f"src-{version}")
    out = work / (f"fake-{version}.tar" if archive else f"fake-{version}")
    build_bundle(model=model, mmproj=mmproj, index=index, card=card(work), version=version, out=out)
    return out


@dataclass(frozen=True)
class RealBundles:
    """Archives built from the cached tiny model and the demo starter-KB index."""

    work: Path
    archives: dict[str, Path]
    demo: Path

    def build(self, version: str, *, index: Path | None = None, model: Path | None = None) -> Path:
        key = hashlib.sha256(f"{version}|{index}|{model}".encode()).hexdigest()[:12]
        out = self.work / f"extra-{version}-{key}.tar"
        if not out.exists():
            build_bundle(
                model=model or self.demo / "tiny-qwen2.5-vl-q4_k_m.gguf",
                mmproj=self.demo / "mmproj-tiny-qwen2.5-vl-f16.gguf",
                index=index or self.demo / "index",
                card=card(self.work),
                version=version,
                out=out,
            )
        return out


Member = tuple[tarfile.TarInfo, bytes]


def tar_members(archive: Path) -> list[Member]:
    out = []
    with tarfile.open(archive) as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            out.append((info, handle.read() if handle else b""))
    return out


def write_tar(members: list[Member], out: Path) -> Path:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out


def model_member(members: list[Member]) -> int:
    return next(i for i, (info, _) in enumerate(members) if info.name.startswith("model/lm"))


# --------------------------------------------------------------------------- repositories


@dataclass
class SignedRepo:
    repo: Repository
    keys: KeyStore

    @property
    def path(self) -> Path:
        return self.repo.path

    def root_bytes(self) -> bytes:
        return (self.repo.metadata_dir / "1.root.json").read_bytes()

    def copy(self, dest: Path) -> Path:
        """A snapshot of the repository as it is now (targets hard-linked)."""
        shutil.copytree(self.path, dest, copy_function=os.link)
        return dest


def make_repo(
    path: Path,
    *archives: Path,
    clock_offset: timedelta = timedelta(0),
    policy: ExpiryPolicy | None = None,
) -> SignedRepo:
    def clock() -> datetime:
        return datetime.now(UTC) + clock_offset

    keys = KeyStore(path / "keys")
    keys.create()
    repo = Repository.create(path / "repo", keys, policy=policy, clock=clock)
    for archive in archives:
        repo.publish(archive)
    return SignedRepo(repo, keys)


def resign(path: Path, signers: list[NamedSigner], *, version_bump: int = 1) -> None:
    """Re-sign a metadata file with exactly ``signers`` (the attacker's choice)."""
    md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
    md.signed.version += version_bump
    md.signatures.clear()
    for named in signers:
        md.sign(named.signer, append=True)
    write_atomic(path, md.to_bytes())


def forge_root(repo: SignedRepo, signers: list[NamedSigner], extra_key: NamedSigner) -> Path:
    """Root v+1 that adds ``extra_key`` as a timestamp key, signed only by ``signers``."""
    md = Metadata[Root].from_bytes((repo.repo.metadata_dir / "root.json").read_bytes())
    root = md.signed
    root.version += 1
    root.add_key(extra_key.signer.public_key, "timestamp")
    md.signatures.clear()
    for named in signers:
        md.sign(named.signer, append=True)
    path = repo.repo.metadata_dir / f"{root.version}.root.json"
    write_atomic(path, md.to_bytes())
    return path


def timestamp_version(metadata_dir: Path) -> int:
    md = Metadata[Timestamp].from_bytes((metadata_dir / "timestamp.json").read_bytes())
    return int(md.signed.version)


def replace_file(path: Path, data: bytes) -> None:
    """Write new content without touching other hard links to the old content."""
    path.unlink()
    path.write_bytes(data)


def bundle_target_file(repo_path: Path, version: str) -> Path:
    found = list((repo_path / "targets" / "bundles").glob(f"*.skinspector-bundle-{version}.tar"))
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- clinic state


def install(data_dir: Path, archive: Path) -> str:
    slots = SlotStore(data_dir / "bundles")
    with slots.lock():
        return slots.install(archive, smoke=no_smoke).slot


def pointer_bytes(data_dir: Path) -> bytes | None:
    path = data_dir / "bundles" / "active.json"
    return path.read_bytes() if path.exists() else None


def active_manifest(data_dir: Path) -> BundleManifest:
    state = SlotStore(data_dir / "bundles").state()
    assert state.active is not None
    return BundleManifest.read(data_dir / "bundles" / state.active)


# --------------------------------------------------------------------------- live server


@contextmanager
def clinic_server(data_dir: Path, cache_dir: Path, **server: Any) -> Iterator[LiveServer]:
    """The clinic server resolving its bundle from ``data_dir`` (slots, fallback, watch)."""
    base: dict[str, Any] = {"bundle_watch_seconds": 0.2, "updates": {"check_hub": False}}
    base.update(server)
    settings = server_settings(data_dir, cache_dir, **base)
    with serve_in_background(
        lambda: start_server(settings, demo_builder=ensure_demo_bundle),
        lambda running: running.stop(),
        timeout=120,
    ) as bg:
        yield LiveServer(bg.running.url, data_dir, settings, bg.running, bg.loop)


def info(live: LiveServer, token: str) -> dict[str, Any]:
    with live.client(token) as client:
        response = client.get("/api/v1/info")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("the condition never came true")


def wait_for_version(live: LiveServer, token: str, version: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if info(live, token)["bundle_version"] == version:
            live.wait_ready()
            return
        time.sleep(0.1)
    raise AssertionError(f"the server never switched to {version}: {info(live, token)}")


def assert_serving(live: LiveServer, token: str, version: str) -> None:
    """The server answers with ``version`` and its model generates."""
    live.wait_ready()
    assert info(live, token)["bundle_version"] == version
    with live.client(token) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2},
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] is not None


def latest_json(repo_path: Path) -> dict[str, Any]:
    found = list((repo_path / "targets").glob("*.latest.json"))
    newest = max(found, key=lambda p: p.stat().st_mtime_ns)
    body: dict[str, Any] = json.loads(newest.read_text())
    return body


def post_case(live: LiveServer, token: str, seed: int) -> str:
    from tests.edge_server.conftest import photo

    metadata = {"age_years": 40, "body_site": "forearm", "language": "en", "notes": "itchy"}
    with live.client(token) as client:
        response = client.post(
            "/api/v1/cases",
            files=[
                ("metadata", (None, json.dumps(metadata), "application/json")),
                ("photo", ("p.jpg", photo(seed), "image/jpeg")),
            ],
        )
    assert response.status_code == 201, response.text
    case_id: str = response.json()["id"]
    return case_id


def wait_case(live: LiveServer, token: str, case_id: str, timeout: float = 180) -> dict[str, Any]:
    end = time.monotonic() + timeout
    with live.client(token) as client:
        while time.monotonic() < end:
            body: dict[str, Any] = client.get(f"/api/v1/cases/{case_id}").json()
            if body["status"] in ("done", "failed", "rejected"):
                return body
            time.sleep(0.2)
    raise AssertionError(f"case {case_id} never finished")
