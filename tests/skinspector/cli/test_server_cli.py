"""``skinspector pair`` and ``devices`` on a real data directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from edge_server.devices import DeviceRegistry
from skinspector.cli import cli


def test_pair_prints_code_qr_and_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["pair", "--data-dir", str(tmp_path), "--base-url", "http://192.168.1.20:8080"]
    )
    assert result.exit_code == 0, result.output
    code = re.search(r"Pairing code: (\d+)", result.output)
    assert code is not None
    assert f"http://192.168.1.20:8080/app/#pair={code.group(1)}" in result.output
    assert len(result.output.splitlines()) > 10  # the terminal QR code
    with DeviceRegistry(tmp_path / "devices.sqlite3") as registry:
        issued = registry.redeem(code.group(1), "ward phone", "127.0.0.1")
    assert issued.token


def test_devices_list_and_revoke(tmp_path: Path) -> None:
    with DeviceRegistry(tmp_path / "devices.sqlite3") as registry:
        code = registry.create_pairing_code().code
        device = registry.redeem(code, "ward phone", "127.0.0.1")
    runner = CliRunner()
    listed = runner.invoke(cli, ["devices", "list", "--data-dir", str(tmp_path), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert rows[0]["name"] == "ward phone"
    assert rows[0]["revoked"] is False
    revoked = runner.invoke(
        cli, ["devices", "revoke", device.device_id, "--data-dir", str(tmp_path)]
    )
    assert revoked.exit_code == 0, revoked.output
    text = runner.invoke(cli, ["devices", "list", "--data-dir", str(tmp_path)])
    assert "revoked" in text.output
    again = runner.invoke(cli, ["devices", "revoke", device.device_id, "--data-dir", str(tmp_path)])
    assert again.exit_code == 1
    assert "no active device" in again.output


def test_config_file_and_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from skinspector.cli.serve import load_settings

    config = tmp_path / "box.toml"
    config.write_text("[server]\nport = 9000\nqueue_size = 3\n[server.mdns]\nenabled = false\n")
    monkeypatch.setenv("SKINSPECTOR_SERVER__QUEUE_SIZE", "5")
    settings = load_settings(config, tmp_path / "data", port=9100)
    assert settings.server.port == 9100  # flag beats environment and file
    assert settings.server.queue_size == 5  # environment beats file
    assert settings.server.mdns.enabled is False  # file beats defaults
    assert settings.server.data_dir == tmp_path / "data"


def test_pair_uses_the_running_servers_address_else_the_settings(tmp_path: Path) -> None:
    """A running server records where it listens (``server.json``); `pair` uses it. A
    record left by a process that is gone is ignored: the settings' port is used."""
    import os
    import subprocess
    import sys

    from edge_server.server import SERVER_RECORD, write_server_record

    no_server = CliRunner().invoke(cli, ["pair", "--data-dir", str(tmp_path)])
    assert no_server.exit_code == 0, no_server.output
    assert ":8080/app/#pair=" in no_server.stdout
    assert "no server is running" in no_server.stderr

    write_server_record(tmp_path, "http://127.0.0.1:18123", "http://192.0.2.7:18123", 18123)
    assert json.loads((tmp_path / SERVER_RECORD).read_text())["pid"] == os.getpid()
    running = CliRunner().invoke(cli, ["pair", "--data-dir", str(tmp_path)])
    assert running.exit_code == 0, running.output
    assert "http://192.0.2.7:18123/app/#pair=" in running.stdout

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    record = json.loads((tmp_path / SERVER_RECORD).read_text())
    record["pid"] = int(gone.stdout)  # a server that crashed without cleaning up
    (tmp_path / SERVER_RECORD).write_text(json.dumps(record))
    stale = CliRunner().invoke(cli, ["pair", "--data-dir", str(tmp_path)])
    assert stale.exit_code == 0, stale.output
    assert ":8080/app/#pair=" in stale.stdout
