"""The mDNS TXT record follows the served bundle: after a hot reload (an update) and a
rollback, a phone browsing the LAN sees the new version without a server restart.
Zeroconf is bound to 127.0.0.1 only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skinspector.cli import cli
from tests.updates.helpers import RealBundles, clinic_server, install, wait_for_version

pytestmark = pytest.mark.slow

BROWSE = (
    "import asyncio, json, sys\n"
    "from edge_server.mdns.browser import browse\n"
    "print(json.dumps(asyncio.run(browse(float(sys.argv[1]), ['127.0.0.1']))))\n"
)


def announced(port: int, seconds: float = 3.0) -> list[dict[str, Any]]:
    """Browse from a second process (a phone's view), bound to 127.0.0.1."""
    out = subprocess.run(
        [sys.executable, "-c", BROWSE, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [s for s in json.loads(out.stdout) if s["port"] == port]


def wait_announced_bundle(port: int, version: str, timeout: float = 60) -> dict[str, str]:
    end = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < end:
        seen = announced(port)
        if len(seen) == 1 and seen[0]["properties"].get("bundle") == version:
            properties: dict[str, str] = seen[0]["properties"]
            return properties
    raise AssertionError(f"mDNS never announced bundle {version}; last seen: {seen}")


def test_txt_record_follows_update_and_rollback(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path
) -> None:
    data = tmp_path / "clinic"
    install(data, real_bundles.archives["1.0.0"])
    mdns = {"enabled": True, "interfaces": ["127.0.0.1"], "instance_name": "SKINspectoR swap"}
    with clinic_server(data, cache_dir, mdns=mdns) as live:
        live.wait_ready()
        token = live.pair()
        port = int(live.url.rsplit(":", 1)[1])
        assert wait_announced_bundle(port, "1.0.0")["demo"] == "0"

        install(data, real_bundles.archives["1.1.0"])  # what `skinspector update` does
        wait_for_version(live, token, "1.1.0")  # hot reload
        wait_announced_bundle(port, "1.1.0")

        result = CliRunner().invoke(cli, ["bundle", "rollback", "--data-dir", str(data)])
        assert result.exit_code == 0, result.output
        wait_for_version(live, token, "1.0.0")
        wait_announced_bundle(port, "1.0.0")
