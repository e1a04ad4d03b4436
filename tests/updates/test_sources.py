"""Where updates come from: the hub serving the repository, and the USB-versus-online
freshness rule (no model runs here)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.review_hub.hub_harness import running_hub
from tests.updates.helpers import bundle_target_file, fake_bundle, make_repo, no_smoke
from updates.client import UpdateClient
from updates.errors import ExpiredMetadataError, UpdateSourceError
from updates.fetcher import UpdateSource
from updates.repository import Repository
from updates.service import run_update


def test_hub_serves_the_repository_and_nothing_else(tmp_path: Path) -> None:
    hub_dir = tmp_path / "hub"
    signed = make_repo(tmp_path / "m", fake_bundle(tmp_path, "1.0.0"))
    signed.copy(hub_dir / "updates")
    target = bundle_target_file(hub_dir / "updates", "1.0.0")
    (hub_dir / "updates" / "metadata" / "link.json").symlink_to(hub_dir / "hub-keys.json")
    (hub_dir / "updates" / "metadata" / ".hidden.json").write_text("{}")
    with running_hub(hub_dir) as hub, httpx.Client(base_url=hub.url) as client:
        response = client.get("/updates/metadata/timestamp.json")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.content == (hub_dir / "updates/metadata/timestamp.json").read_bytes()
        relative = target.relative_to(hub_dir / "updates").as_posix()
        response = client.get(f"/updates/{relative}")
        assert response.status_code == 200
        assert response.content == target.read_bytes()
        for path in (
            "/updates/metadata/",
            "/updates/metadata/link.json",
            "/updates/metadata/.hidden.json",
            "/updates/metadata/%2e%2e/%2e%2e/hub-keys.json",
            "/updates/hub.sqlite3",
            "/updates/metadata/404.json",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"


def test_usb_accepts_weeks_old_metadata_that_online_refuses(tmp_path: Path) -> None:
    # Refreshed 20 days ago: valid for 22 more days (6-week timestamps).
    signed = make_repo(
        tmp_path / "m", fake_bundle(tmp_path, "1.0.0"), clock_offset=timedelta(days=-20)
    )
    data = tmp_path / "clinic"

    def check(source: str, state: str) -> str:
        client = UpdateClient(tmp_path / state)
        client.provision(signed.root_bytes())
        source_ = UpdateSource.parse(source)
        return run_update(data, source_, client=client, smoke=no_smoke, check_only=True).status

    assert check(str(signed.path), "usb") == "available"  # a USB stick
    with running_hub(tmp_path / "hub", updates_dir=signed.path) as hub:
        with pytest.raises(ExpiredMetadataError, match="signed 20 days ago"):
            check(f"{hub.url}/updates/", "online")
        Repository(signed.path, signed.keys).refresh()  # the hub's daily re-signing, today
        assert check(f"{hub.url}/updates/", "online") == "available"


def test_unreachable_hub_is_a_source_error(tmp_path: Path) -> None:
    signed = make_repo(tmp_path / "m")
    client = UpdateClient(tmp_path / "state")
    client.provision(signed.root_bytes())
    source = UpdateSource.parse("http://127.0.0.1:9/updates/", timeout_seconds=2)
    with pytest.raises(UpdateSourceError, match="cannot be read"):
        run_update(tmp_path / "clinic", source, client=client, smoke=no_smoke)
