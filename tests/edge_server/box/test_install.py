"""``skinspector box install/uninstall`` into a staging root, units checked by systemd."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_server.box.install import InstallPlan, render_unit
from skinspector.cli import cli

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
needs_systemd = pytest.mark.skipif(
    not Path(SYSTEMD_ANALYZE).exists(), reason="systemd-analyze is not installed"
)
EXE = Path(
    shutil.which("skinspector") or Path(__file__).resolve().parents[3] / ".venv/bin/skinspector"
)


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False
    )


def _install(root: Path, *extra: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["box", "install", "--root", str(root), "--executable", str(EXE), *extra],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def _directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_install_writes_a_hardened_unit_and_a_private_data_dir(tmp_path: Path) -> None:
    root = tmp_path / "root"
    output = _install(root, "--data-dir", "/srv/skin")
    unit_path = root / "etc/systemd/system/skinspector.service"
    unit = _directives(unit_path.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] == ["60"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["After"] == ["network-online.target"]
    assert unit["Wants"] == ["network-online.target"]
    assert unit["WantedBy"] == ["multi-user.target"]
    assert unit["User"] == ["skinspector"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"] == ["/srv/skin"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["ProtectHome"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["UMask"] == ["0077"]
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs"):
        assert unit[key] == ["yes"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert unit["ExecStart"][0].startswith(f"{EXE} --log-json serve --data-dir /srv/skin")

    data = root / "srv/skin"
    for folder in (data, data / "photos", data / "bundles", data / "sync"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    # Only the public recovery key stays on the box; the private one is printed.
    assert (data / "recovery.pub").read_text().startswith("SKRP1-")
    assert "SKRK1-" in output
    assert not any("SKRK1-" in p.read_text() for p in data.rglob("*") if p.is_file())
    # Nothing system-wide was done in a staging root.
    assert "skipped (staging root): create system user 'skinspector'" in output
    assert "systemctl enable --now skinspector.service" in output


@needs_systemd
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(root, "--config", "/etc/skinspector/box.toml", "--port", "8443")
    result = _verify(root / "etc/systemd/system/skinspector.service")
    assert result.returncode == 0, result.stderr
    assert (
        "--config /etc/skinspector/box.toml --port 8443"
        in (root / "etc/systemd/system/skinspector.service").read_text()
    )


@needs_systemd
def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify step is a real check: a unit whose program is missing is refused."""
    unit = tmp_path / "skinspector.service"
    unit.write_text(render_unit(InstallPlan(tmp_path / "no-such-program")))
    result = _verify(unit)
    assert result.returncode != 0


def test_dry_run_prints_the_unit_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    output = _install(root, "--dry-run")
    assert "[Service]" in output
    assert "Type=notify" in output
    assert not root.exists()


def test_uninstall_removes_the_unit_and_keeps_the_data(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(root)
    data = root / "var/lib/skinspector"
    (data / "cases.sqlite3").write_bytes(b"keep me")
    result = CliRunner().invoke(cli, ["box", "uninstall", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert not (root / "etc/systemd/system/skinspector.service").exists()
    assert (data / "cases.sqlite3").read_bytes() == b"keep me"
    assert (data / "recovery.pub").exists()


def test_reinstall_keeps_the_recovery_key(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(root)
    key = (root / "var/lib/skinspector/recovery.pub").read_text()
    output = _install(root)
    assert (root / "var/lib/skinspector/recovery.pub").read_text() == key
    assert "SKRK1-" not in output


def test_relative_data_dir_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["box", "install", "--root", str(tmp_path), "--data-dir", "data"]
    )
    assert result.exit_code == 2
    assert "absolute" in result.output
