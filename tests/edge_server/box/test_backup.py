"""Encrypted backups end to end: a real data directory, restored into a new one; and the
attacks: wrong key, truncated file, flipped byte, reordered chunks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_server.box import backup as backup_mod
from edge_server.box.backup import (
    BackupError,
    RecoveryKey,
    create_backup,
    restore_backup,
    save_public_key,
)
from edge_server.devices import DeviceRegistry
from edge_server.store import CaseStore
from edge_server.sync_wiring import clinic_keys, open_outbox
from skinspector.cli import cli
from skinspector.core.errors import InputError
from skinspector.core.storage import file_sha256
from tests.edge_server.box.conftest import add_cases


def _photos(data_dir: Path) -> dict[str, str]:
    root = data_dir / "photos"
    return {str(p.relative_to(root)): file_sha256(p) for p in root.rglob("*.jpg")}


@pytest.fixture
def key(filled_box: Path) -> RecoveryKey:
    recovery = RecoveryKey.generate()
    save_public_key(filled_box, recovery)
    return recovery


def test_backup_and_restore_bring_every_case_back(
    filled_box: Path, key: RecoveryKey, tmp_path: Path
) -> None:
    store = CaseStore(filled_box)  # the server is "running": the store is open
    try:
        before = {c.id: c.public() for c in store.list_cases(limit=100)}
        archive = create_backup(filled_box, tmp_path / "out")
    finally:
        store.close()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    raw = archive.read_bytes()
    assert b"SQLite format 3" not in raw
    assert b"forearm" not in raw
    assert b"\xff\xd8\xff" not in raw  # no JPEG in the clear

    target = tmp_path / "new-box" / "data"
    restored = restore_backup(archive, RecoveryKey.from_text(key.secret_text), target)
    assert "data/cases.sqlite3" in restored
    assert stat.S_IMODE(target.stat().st_mode) == 0o700

    again = CaseStore(target)
    try:
        after = {c.id: c.public() for c in again.list_cases(limit=100)}
    finally:
        again.close()
    assert after == before
    assert len(after) == 3
    assert _photos(target) == _photos(filled_box)
    outbox = open_outbox(target)
    try:
        assert {e.case_id for e in outbox.entries()} == set(before)
    finally:
        outbox.close()
    assert clinic_keys(target).party_id == clinic_keys(filled_box).party_id
    with DeviceRegistry(target / "devices.sqlite3") as registry:
        assert registry.list_devices() == []  # the registry opens and reads
    assert (target / "recovery.pub").read_text() == (filled_box / "recovery.pub").read_text()


def test_large_data_spans_many_chunks(
    filled_box: Path, key: RecoveryKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_mod, "CHUNK", 4096)
    add_cases(filled_box, 5)
    archive = create_backup(filled_box, tmp_path / "out")
    target = tmp_path / "restored"
    restore_backup(archive, key, target)
    assert _photos(target) == _photos(filled_box)


def test_wrong_key_restores_nothing(filled_box: Path, key: RecoveryKey, tmp_path: Path) -> None:
    archive = create_backup(filled_box, tmp_path / "out")
    target = tmp_path / "restored"
    with pytest.raises(BackupError, match="wrong recovery key"):
        restore_backup(archive, RecoveryKey.generate(), target)
    assert not target.exists()
    assert list(tmp_path.glob(".restored.restore-*")) == []


def _damaged(archive: Path, key: RecoveryKey, data: bytes, tmp_path: Path) -> None:
    bad = tmp_path / "bad.skbk"
    bad.write_bytes(data)
    with pytest.raises(BackupError):
        restore_backup(bad, key, tmp_path / "restored-bad")
    assert not (tmp_path / "restored-bad").exists()


def test_truncated_backup_is_refused(filled_box: Path, key: RecoveryKey, tmp_path: Path) -> None:
    archive = create_backup(filled_box, tmp_path / "out")
    raw = archive.read_bytes()
    _damaged(archive, key, raw[: len(raw) // 2], tmp_path)


def test_dropped_last_chunk_is_refused(
    filled_box: Path, key: RecoveryKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cutting the file exactly at a chunk boundary: the missing final flag gives it away."""
    monkeypatch.setattr(backup_mod, "CHUNK", 4096)
    archive = create_backup(filled_box, tmp_path / "out")
    raw = archive.read_bytes()
    offset, ends = 56, []
    while offset < len(raw):
        offset += 4 + int.from_bytes(raw[offset : offset + 4], "big")
        ends.append(offset)
    assert len(ends) > 2
    _damaged(archive, key, raw[: ends[-2]], tmp_path)


def test_flipped_byte_is_refused(filled_box: Path, key: RecoveryKey, tmp_path: Path) -> None:
    archive = create_backup(filled_box, tmp_path / "out")
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    _damaged(archive, key, bytes(raw), tmp_path)


def test_tampered_header_is_refused(filled_box: Path, key: RecoveryKey, tmp_path: Path) -> None:
    archive = create_backup(filled_box, tmp_path / "out")
    raw = bytearray(archive.read_bytes())
    raw[45] ^= 0x01  # inside the salt
    _damaged(archive, key, bytes(raw), tmp_path)


def test_restore_never_overwrites_a_data_dir(
    filled_box: Path, key: RecoveryKey, tmp_path: Path
) -> None:
    archive = create_backup(filled_box, tmp_path / "out")
    with pytest.raises(InputError, match="not empty"):
        restore_backup(archive, key, filled_box)


def test_backup_needs_the_recovery_key(filled_box: Path, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="recovery-key init"):
        create_backup(filled_box, tmp_path / "out")


def test_key_text_survives_being_read_out(key: RecoveryKey) -> None:
    spoken = key.secret_text.lower().replace("-", " ")
    assert RecoveryKey.from_text("SKRK1-" + spoken[6:]).public_text == key.public_text
    with pytest.raises(InputError):
        RecoveryKey.from_text(key.secret_text[:-3])


def test_cli_round_trip(filled_box: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    private = tmp_path / "offline" / "recovery.key"
    private.parent.mkdir()
    init = runner.invoke(
        cli,
        [
            "box",
            "recovery-key",
            "init",
            "--data-dir",
            str(filled_box),
            "--save-private",
            str(private),
        ],
    )
    assert init.exit_code == 0, init.output
    secret = private.read_text().strip()
    assert secret in init.output
    again = runner.invoke(cli, ["box", "recovery-key", "init", "--data-dir", str(filled_box)])
    assert again.exit_code == 2
    assert "--force" in again.output

    made = runner.invoke(
        cli, ["box", "backup", "--data-dir", str(filled_box), "--out", str(tmp_path / "usb")]
    )
    assert made.exit_code == 0, made.output
    (archive,) = (tmp_path / "usb").glob("*.skbk")
    target = tmp_path / "new"
    restored = runner.invoke(
        cli,
        ["box", "restore", "--from", str(archive), "--key", "-", "--data-dir", str(target)],
        input=secret + "\n",
    )
    assert restored.exit_code == 0, restored.output
    assert _photos(target) == _photos(filled_box)

    wrong = runner.invoke(
        cli,
        ["box", "restore", "--from", str(archive), "--key", RecoveryKey.generate().secret_text,
         "--data-dir", str(tmp_path / "other")],
    )  # fmt: skip
    assert wrong.exit_code == 1
    assert "wrong recovery key" in wrong.output
    assert "Traceback" not in wrong.output


def test_backup_inside_the_data_dir_is_refused(filled_box: Path, key: RecoveryKey) -> None:
    with pytest.raises(InputError, match="outside the data directory"):
        create_backup(filled_box, filled_box / "photos" / "x")


def test_settings_file_travels_with_the_backup(filled_box: Path, tmp_path: Path) -> None:
    config = tmp_path / "box.toml"
    config.write_text("[server]\nport = 8443\n")
    runner = CliRunner()
    init = runner.invoke(cli, ["box", "recovery-key", "init", "--data-dir", str(filled_box)])
    secret = next(w for w in init.output.split() if w.startswith("SKRK1-"))
    made = runner.invoke(
        cli,
        ["box", "backup", "--config", str(config), "--data-dir", str(filled_box),
         "--out", str(tmp_path / "usb")],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    (archive,) = (tmp_path / "usb").glob("*.skbk")
    target = tmp_path / "new"
    restore_backup(archive, RecoveryKey.from_text(secret), target)
    assert (target / "restored-extra" / "settings.toml").read_text() == config.read_text()
