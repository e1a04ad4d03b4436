"""The attack catalogue: one named test per attack. Each asserts the error, and that the
clinic's active bundle (real tiny model, 1.0.0 in slot-a) is unchanged and still serving.

One clinic server runs for the whole module; every test brings its own repository and its
own TUF client state (``client=``), so attacks do not leak into each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skinspector.core.bundle_manifest import BundleManifest
from tests.edge_server.conftest import LiveServer
from tests.review_hub.hub_harness import running_hub
from tests.updates.helpers import (
    RealBundles,
    SignedRepo,
    assert_serving,
    bundle_target_file,
    clinic_server,
    fake_bundle,
    forge_root,
    install,
    make_repo,
    model_member,
    no_smoke,
    pointer_bytes,
    replace_file,
    resign,
    tar_members,
    write_tar,
)
from updates import repository as repository_module
from updates.client import UpdateClient
from updates.clock import TrustedTime
from updates.errors import (
    BundleIntegrityError,
    DownloadIntegrityError,
    ExpiredMetadataError,
    MetadataMismatchError,
    RollbackError,
    SignatureError,
    SmokeTestError,
)
from updates.fetcher import UpdateSource
from updates.integrity import verify_directory
from updates.keys import KeyStore
from updates.service import UpdateOutcome, run_update
from updates.slots import SmokeTest

pytestmark = pytest.mark.slow


@dataclass
class Clinic:
    data: Path
    live: LiveServer
    token: str
    pointer: bytes

    def assert_unchanged(self) -> None:
        """Same pointer, the active slot intact file by file, and the model answering."""
        assert pointer_bytes(self.data) == self.pointer
        slot = self.data / "bundles" / "slot-a"
        verify_directory(slot, BundleManifest.read(slot), installed=True)
        assert not (self.data / "bundles" / "slot-b").exists()
        assert not (self.data / "bundles" / "download").exists()
        assert not (self.data / "bundles" / "staging").exists()  # a refusal cleans up
        assert_serving(self.live, self.token, "1.0.0")


@pytest.fixture(scope="module")
def clinic(
    tmp_path_factory: pytest.TempPathFactory, real_bundles: RealBundles, cache_dir: Path
) -> Iterator[Clinic]:
    data = tmp_path_factory.mktemp("clinic")
    install(data, real_bundles.archives["1.0.0"])
    with clinic_server(data, cache_dir) as live:
        live.wait_ready()
        token = live.pair()
        pointer = pointer_bytes(data)
        assert pointer is not None
        state = Clinic(data, live, token, pointer)
        state.assert_unchanged()
        yield state


def _client(tmp_path: Path, signed: SignedRepo) -> UpdateClient:
    client = UpdateClient(tmp_path / "tuf")
    client.provision(signed.root_bytes())
    return client


def _update(
    clinic: Clinic,
    source: str | Path,
    client: UpdateClient,
    *,
    check_only: bool = False,
    smoke: SmokeTest = no_smoke,
) -> UpdateOutcome:
    return run_update(
        clinic.data,
        UpdateSource.parse(str(source)),
        client=client,
        smoke=smoke,
        check_only=check_only,
    )


def _publish_unverified(signed: SignedRepo, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The maintainer's own archive check is skipped: as if the targets key signed a bad
    bundle (stolen key or a broken build). The clinic must still refuse it."""
    with monkeypatch.context() as patch:
        patch.setattr(repository_module, "verify_archive", lambda *a, **k: None)
        signed.repo.publish(archive)


def test_tampered_bundle_file(tmp_path: Path, clinic: Clinic) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.1.0"))
    client = _client(tmp_path, signed)
    assert _update(clinic, signed.path, client, check_only=True).status == "available"
    target = bundle_target_file(signed.path, "1.1.0")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    replace_file(target, bytes(data))
    with pytest.raises(DownloadIntegrityError, match="tampered"):
        _update(clinic, signed.path, client)
    clinic.assert_unchanged()


def test_tampered_file_inside_a_signed_bundle(
    tmp_path: Path, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = tar_members(fake_bundle(tmp_path, "1.1.0"))
    i = model_member(members)
    info, data = members[i]
    members[i] = (info, data[:-1] + bytes([data[-1] ^ 1]))
    signed = make_repo(tmp_path / "m")
    _publish_unverified(signed, write_tar(members, tmp_path / "bad.tar"), monkeypatch)
    with pytest.raises(BundleIntegrityError, match="SHA-256 differs from the manifest"):
        _update(clinic, signed.path, _client(tmp_path, signed))
    clinic.assert_unchanged()


def test_rollback_attack(tmp_path: Path, clinic: Clinic) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.1.0"))
    old = signed.copy(tmp_path / "old-repo")  # what an attacker kept
    signed.repo.publish(fake_bundle(tmp_path, "1.2.0"))
    client = _client(tmp_path, signed)
    assert _update(clinic, signed.path, client, check_only=True).version == "1.2.0"
    with pytest.raises(RollbackError, match="rollback"):
        _update(clinic, old, client)
    clinic.assert_unchanged()


def test_freeze_attack_expired_timestamp(tmp_path: Path, clinic: Clinic) -> None:
    # Everything was signed 60 days ago: the 6-week timestamp and snapshot have expired.
    signed = make_repo(
        tmp_path / "m", fake_bundle(tmp_path, "1.1.0"), clock_offset=timedelta(days=-60)
    )
    with pytest.raises(ExpiredMetadataError, match=r"timestamp\.json is expired"):
        _update(clinic, signed.path, _client(tmp_path, signed))
    clinic.assert_unchanged()


def test_freeze_attack_with_the_clock_set_back(tmp_path: Path, clinic: Clinic) -> None:
    # Signed 30 days ago, so by this machine's clock it is still valid for 12 days; but the
    # clinic has verified metadata signed 20 days from now: its clock is behind, and the
    # metadata's expiry has passed by the time the clinic can trust.
    signed = make_repo(
        tmp_path / "m", fake_bundle(tmp_path, "1.1.0"), clock_offset=timedelta(days=-30)
    )
    client = _client(tmp_path, signed)
    TrustedTime(datetime.now(UTC) + timedelta(days=20)).save(client.time_file)
    with pytest.raises(ExpiredMetadataError, match="clock is behind"):
        _update(clinic, signed.path, client)
    clinic.assert_unchanged()


def test_mix_and_match_attack(tmp_path: Path, clinic: Clinic) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.1.0"))
    metadata = signed.repo.metadata_dir
    older_targets = (metadata / f"{signed.repo.targets().signed.version}.targets.json").read_bytes()
    signed.repo.publish(fake_bundle(tmp_path, "1.2.0"))
    newest = signed.repo.targets().signed.version
    replace_file(metadata / f"{newest}.targets.json", older_targets)  # new snapshot, old targets
    with pytest.raises(MetadataMismatchError) as refused:
        _update(clinic, signed.path, _client(tmp_path, signed))
    # The message names the real cause (the file is not the one that was signed).
    assert "signed" in str(refused.value)
    assert "more data than allowed" not in str(refused.value)
    clinic.assert_unchanged()


def test_root_signed_by_too_few_root_keys(tmp_path: Path, clinic: Clinic) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.1.0"))
    client = _client(tmp_path, signed)
    # One stolen root key (threshold 2) adds the attacker's timestamp key to a new root.
    attacker = KeyStore.generate("timestamp")
    forge_root(signed, [signed.keys.load("root-1")], attacker)
    resign(signed.repo.metadata_dir / "timestamp.json", [attacker])
    with pytest.raises(SignatureError, match="not signed by enough trusted keys"):
        _update(clinic, signed.path, client)
    assert client.trusted_root().version == 1
    clinic.assert_unchanged()


def test_metadata_signed_by_an_unknown_key(tmp_path: Path, clinic: Clinic) -> None:
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.1.0"))
    client = _client(tmp_path, signed)
    resign(signed.repo.metadata_dir / "timestamp.json", [KeyStore.generate("timestamp")])
    with pytest.raises(SignatureError):
        _update(clinic, signed.path, client)
    clinic.assert_unchanged()


def test_endless_data_from_the_hub(tmp_path: Path, clinic: Clinic) -> None:
    hub_dir = tmp_path / "hub"
    signed = make_repo(hub_dir / "maintainer", fake_bundle(tmp_path, "1.1.0"))
    signed.copy(hub_dir / "updates")  # what the hub serves
    target = bundle_target_file(hub_dir / "updates", "1.1.0")
    signed_length = target.stat().st_size
    replace_file(target, target.read_bytes())
    os.truncate(target, signed_length + 4 * 1024**3)  # 4 GiB more than signed (sparse)
    client = _client(tmp_path, signed)
    with running_hub(hub_dir) as hub:
        source = f"{hub.url}/updates/"
        assert _update(clinic, source, client, check_only=True).status == "available"
        with pytest.raises(DownloadIntegrityError, match="endless data"):
            _update(clinic, source, client)
    clinic.assert_unchanged()


def test_file_larger_than_the_manifest_says(
    tmp_path: Path, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = tar_members(fake_bundle(tmp_path, "1.1.0"))
    i = model_member(members)
    info, data = members[i]
    members[i] = (info, data + b"\0" * (1024 * 1024))
    signed = make_repo(tmp_path / "m")
    _publish_unverified(signed, write_tar(members, tmp_path / "long.tar"), monkeypatch)
    with pytest.raises(BundleIntegrityError, match="bytes in the archive, the manifest says"):
        _update(clinic, signed.path, _client(tmp_path, signed))
    clinic.assert_unchanged()


def test_bundle_whose_smoke_test_fails(
    tmp_path: Path, clinic: Clinic, real_bundles: RealBundles
) -> None:
    # Signed, complete and matching its manifest, but the model inside is garbage: the real
    # smoke test (a child process loading it with llama.cpp) fails.
    broken = tmp_path / "broken-q4_k_m.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(256 * 1024))
    archive = real_bundles.build("1.9.0", model=broken)
    signed = make_repo(tmp_path / "m", archive)
    client = _client(tmp_path, signed)
    from updates.smoke import subprocess_smoke_test

    with pytest.raises(SmokeTestError, match=r"smoke test failed.*cannot load"):
        _update(clinic, signed.path, client, smoke=subprocess_smoke_test)
    clinic.assert_unchanged()
