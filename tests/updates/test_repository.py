"""Maintainer keys and the TUF repository, with a clinic updating from a directory
(small synthetic bundles: no model runs here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.updates.helpers import fake_bundle, make_repo, no_smoke, pointer_bytes, resign
from updates.client import UpdateClient
from updates.errors import (
    BundleInputError,
    KeyStoreError,
    NotProvisionedError,
    SignatureError,
    UpdateError,
)
from updates.fetcher import UpdateSource
from updates.keys import KeyStore
from updates.repository import Repository
from updates.service import run_update
from updates.slots import SlotStore


def _clinic(tmp_path: Path, root: bytes) -> Path:
    data = tmp_path / "clinic"
    UpdateClient(data / "updates").provision(root)
    return data


def _update(data: Path, repo: Path, *, check_only: bool = False) -> str:
    source = UpdateSource.parse(str(repo))
    return run_update(data, source, smoke=no_smoke, check_only=check_only).status


def test_key_files_are_private(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    store.create()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    for path in store.path.glob("*.pem"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.names() == ["root-1", "root-2", "root-3", "snapshot", "targets", "timestamp"]
    with pytest.raises(KeyStoreError, match="already holds keys"):
        store.create()
    os.chmod(store.path / "targets.pem", 0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        store.load("targets")


def test_publish_then_update_from_a_directory(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.0.0"))
    data = _clinic(tmp_path, signed.root_bytes())
    assert _update(data, signed.path) == "installed"
    assert _update(data, signed.path) == "up-to-date"
    signed.repo.publish(fake_bundle(tmp_path, "1.1.0"))
    assert _update(data, signed.path, check_only=True) == "available"
    assert SlotStore(data / "bundles").status()["active_version"] == "1.0.0"
    assert _update(data, signed.path) == "installed"
    status = SlotStore(data / "bundles").status()
    assert (status["active_version"], status["previous_version"]) == ("1.1.0", "1.0.0")
    SlotStore(data / "bundles").rollback()
    assert _update(data, signed.path) == "held-back"
    assert SlotStore(data / "bundles").status()["active_version"] == "1.0.0"


def test_publish_refuses_an_older_or_equal_version_and_prunes(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.1.0"))
    with pytest.raises(BundleInputError, match=r"not newer than the published 1\.1\.0"):
        signed.repo.publish(fake_bundle(tmp_path, "1.0.0"))
    for version in ("1.2.0", "1.3.0"):
        signed.repo.publish(fake_bundle(tmp_path, version), keep=2)
    assert signed.repo.status()["bundles"] == ["1.2.0", "1.3.0"]
    on_disk = sorted(p.name.split(".", 1)[1] for p in (signed.path / "targets/bundles").iterdir())
    assert on_disk == ["skinspector-bundle-1.2.0.tar", "skinspector-bundle-1.3.0.tar"]


def test_root_needs_a_threshold_of_root_keys(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m")
    for name in ("root-2", "root-3"):
        (signed.keys.path / f"{name}.pem").rename(tmp_path / f"{name}.pem")
    with pytest.raises(KeyStoreError, match="needs 2 of the current root keys"):
        signed.repo.rotate("targets")
    assert signed.repo.root().signed.version == 1


def test_rotated_keys_reach_the_clinic_and_retired_keys_stop_working(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.0.0"))
    data = _clinic(tmp_path, signed.root_bytes())
    assert _update(data, signed.path) == "installed"
    old_targets = signed.keys.load("targets")
    signed.repo.rotate("targets")
    signed.repo.rotate("root-1")
    assert list((signed.keys.path / "retired").glob("targets-*.pem"))
    signed.repo.publish(fake_bundle(tmp_path, "1.1.0"))
    assert _update(data, signed.path) == "installed"
    client = UpdateClient(data / "updates")
    assert client.trusted_root().version == 3
    assert (
        client.trusted_root().fingerprint
        == UpdateClient(data / "updates").trusted_root().fingerprint
    )
    # The retired targets key signs a newer targets file: refused.
    metadata = signed.repo.metadata_dir
    version = signed.repo.snapshot().signed.meta["targets.json"].version
    resign(metadata / f"{version}.targets.json", [old_targets], version_bump=0)
    signed.repo.refresh()
    before = pointer_bytes(data)
    with pytest.raises(SignatureError):
        _update(data, signed.path)
    assert pointer_bytes(data) == before


def test_provisioning(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m")
    client = UpdateClient(tmp_path / "clinic" / "updates")
    with pytest.raises(NotProvisionedError, match="--init-root"):
        client.trusted_root()
    with pytest.raises(SignatureError):
        client.provision(b'{"signed": {}, "signatures": []}')
    info = client.provision(signed.root_bytes())
    assert info.version == 1
    assert info.threshold == 2
    assert len(info.keyids) == 3
    assert client.provision(signed.root_bytes()) == info  # idempotent
    other = make_repo(tmp_path / "other")
    with pytest.raises(UpdateError, match="already trusts root v1"):
        client.provision(other.root_bytes())
    empty = tmp_path / "empty"
    with pytest.raises(NotProvisionedError):
        run_update(empty, UpdateSource.parse(str(signed.path)), smoke=no_smoke)


def test_repository_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UpdateError, match="not an update repository"):
        UpdateSource.parse(str(tmp_path))
    with pytest.raises(KeyStoreError, match="not a bundle repository"):
        Repository(tmp_path, KeyStore(tmp_path / "k")).status()
