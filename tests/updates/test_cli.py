"""``skinspector bundle ...`` and ``skinspector update`` through click: clear messages and
exit statuses, never a traceback (small synthetic bundles: no model runs here)."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from skinspector.cli import cli
from tests.updates.helpers import (
    bundle_target_file,
    fake_bundle,
    fake_model_files,
    install,
    make_repo,
    replace_file,
)
from updates.repository import ExpiryPolicy


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _ok(*args: str | Path) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    result = _ok("bundle", "keys", "init", "--keys", keys, "--repo", repo)
    assert "root fingerprint (SHA-256, check it out of band):" in result.stdout
    return keys, repo


def test_keys_init_and_rotate(tmp_path: Path) -> None:
    keys, repo = _repo(tmp_path)
    assert stat.S_IMODE((keys / "root-1.pem").stat().st_mode) == 0o600
    again = invoke("bundle", "keys", "init", "--keys", keys, "--repo", repo)
    assert again.exit_code == 1
    assert "already holds a repository" in again.output
    assert "Traceback" not in again.output
    result = _ok("bundle", "keys", "rotate", "timestamp", "--keys", keys, "--repo", repo)
    assert "root is now version 2" in result.stdout
    unknown = invoke("bundle", "keys", "rotate", "nope", "--keys", keys, "--repo", repo)
    assert unknown.exit_code == 1
    assert "key not found" in unknown.output
    bad = invoke("bundle", "keys", "init", "--keys", tmp_path / "k2", "--repo", tmp_path / "r2",
                 "--root-keys", "2", "--threshold", "3")  # fmt: skip
    assert bad.exit_code == 2


def test_build_reports_bad_input_with_status_2(tmp_path: Path) -> None:
    model, mmproj, index = fake_model_files(tmp_path / "src")
    (tmp_path / "card.md").write_text("## Base model\nQwen\n")
    result = invoke(
        "bundle", "build", "--model", model, "--mmproj", mmproj, "--index", index,
        "--version", "1.0.0", "--card", tmp_path / "card.md", "--out", tmp_path / "b",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "bad input: the model card lacks these sections" in result.output
    assert "Traceback" not in result.output
    card = tmp_path / "CARD.md"
    card.write_text(_ok("bundle", "card-template").stdout)
    result = _ok(
        "bundle", "build", "--model", model, "--mmproj", mmproj, "--index", index,
        "--version", "1.0.0", "--card", card, "--out", tmp_path / "b.tar", "--top-k", "40",
        "--json",
    )  # fmt: skip
    manifest = json.loads(result.stdout)
    assert manifest["sampling"]["top_k"] == 40
    assert manifest["card"]["data_licence"].startswith("SkinCAP is licensed CC BY-NC-SA 4.0")


def test_update_from_a_directory_then_refusals(tmp_path: Path) -> None:
    keys, repo = _repo(tmp_path)
    data = tmp_path / "clinic"
    none = invoke("update", "--data-dir", data)
    assert none.exit_code == 2
    assert "no update source" in none.output
    status = _ok("bundle", "status", "--data-dir", data)
    assert "active: none (the server runs the DEMO bundle)" in status.stdout
    assert "not provisioned" in status.stdout
    root = repo / "metadata" / "1.root.json"
    _ok("update", "--data-dir", data, "--init-root", root)
    empty = _ok("update", "--data-dir", data, "--from", repo)
    assert "has no bundle yet" in empty.stdout
    _ok("bundle", "publish", fake_bundle(tmp_path, "1.0.0"), "--repo", repo, "--keys", keys)
    check = _ok("update", "--data-dir", data, "--from", repo, "--check")
    assert "bundle 1.0.0 is available" in check.stdout
    # The fake model cannot load: the real smoke test (a child process) says so.
    failed = invoke("update", "--data-dir", data, "--from", repo)
    assert failed.exit_code == 1
    assert "smoke test failed" in failed.output
    assert "Traceback" not in failed.output
    target = bundle_target_file(repo, "1.0.0")
    replace_file(target, target.read_bytes()[:-1] + b"X")
    tampered = invoke("update", "--data-dir", data, "--from", repo)
    assert tampered.exit_code == 1
    assert "does not match its signed length and SHA-256" in tampered.output
    assert "active: none" in _ok("bundle", "status", "--data-dir", data).stdout
    rollback = invoke("bundle", "rollback", "--data-dir", data)
    assert rollback.exit_code == 1
    assert "no previous bundle" in rollback.output


def test_publish_and_refresh_report_expiry(tmp_path: Path) -> None:
    keys, repo = _repo(tmp_path)
    result = _ok("bundle", "publish", fake_bundle(tmp_path, "2.0.0"), "--repo", repo,
                 "--keys", keys)  # fmt: skip
    assert "published bundle 2.0.0" in result.stdout
    assert "bundles in the repository: 2.0.0" in result.stdout
    older = invoke("bundle", "publish", fake_bundle(tmp_path, "1.0.0"), "--repo", repo,
                   "--keys", keys)  # fmt: skip
    assert older.exit_code == 2
    assert "not newer than the published 2.0.0" in older.output
    refreshed = _ok("bundle", "refresh", "--repo", repo, "--keys", keys, "--targets")
    assert refreshed.stdout.startswith("timestamp v3 expires")


def test_status_verify_checks_every_installed_file(tmp_path: Path) -> None:
    data = tmp_path / "clinic"
    for version in ("1.0.0", "1.1.0"):
        install(data, fake_bundle(tmp_path, version))
    result = _ok("bundle", "status", "--data-dir", data, "--verify")
    assert "active:   1.1.0 (slot-b)" in result.stdout
    assert result.stdout.count("files: ok") == 2
    model = data / "bundles" / "slot-b" / "model" / "lm.gguf"
    model.write_bytes(model.read_bytes()[:-1] + b"!")
    bad = invoke("bundle", "status", "--data-dir", data, "--verify", "--json")
    assert bad.exit_code == 1
    assert "the active bundle does not match its manifest" in bad.output
    report = json.loads(bad.stdout)
    assert (
        report["slots"]["slot-b"]["verified"] == "model/lm.gguf: SHA-256 differs from the manifest"
    )
    assert report["slots"]["slot-a"]["verified"] == "ok"


def test_refresh_warns_before_root_expires(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m", policy=ExpiryPolicy(root=timedelta(days=30)))
    result = _ok("bundle", "refresh", "--repo", signed.path, "--keys", signed.keys.path)
    assert "warning: root metadata expires" in result.stderr
    assert "skinspector bundle keys rotate" in result.stderr
    fresh = make_repo(tmp_path / "fresh")
    quiet = _ok("bundle", "refresh", "--repo", fresh.path, "--keys", fresh.keys.path)
    assert "warning" not in quiet.stderr
