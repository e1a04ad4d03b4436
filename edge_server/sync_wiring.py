"""Wiring the sync agent to the edge: where its keys and outbox live, what it sends.

``sync_agent`` never imports the edge; the edge hands it a payload function (a finished
case as JSON, photos included) and a callback that attaches incoming reviews to cases.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_server.settings import EdgeSettings
from edge_server.store import CaseStore
from sync_agent.outbox import Outbox

if TYPE_CHECKING:  # the crypto stack loads only when sync is configured
    from sync_agent.agent import SyncAgent
    from sync_agent.keys import PartyKeys, PublicIdentity

__all__ = [
    "HubConfig",
    "build_agent",
    "case_payload",
    "clinic_keys",
    "hub_config",
    "hub_update_source",
    "open_outbox",
    "save_hub_config",
]

PAYLOAD_FORMAT = 1


def sync_dir(data_dir: Path) -> Path:
    return data_dir / "sync"


def open_outbox(data_dir: Path) -> Outbox:
    return Outbox(data_dir / "cases.sqlite3", sync_dir(data_dir) / "outbox")


def clinic_keys(data_dir: Path, *, create: bool = False) -> PartyKeys:
    """The clinic's signing + decryption keys (``sync/clinic-keys.json``, mode 0600)."""
    from sync_agent.keys import PartyKeys, generate_keys

    path = sync_dir(data_dir) / "clinic-keys.json"
    if not path.is_file() and create:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        generate_keys().save(path)
    return PartyKeys.load(path)


@dataclass(frozen=True, slots=True)
class HubConfig:
    url: str
    identity: PublicIdentity


def hub_config(data_dir: Path) -> HubConfig | None:
    path = sync_dir(data_dir) / "hub.json"
    if not path.is_file():
        return None
    from sync_agent.keys import PublicIdentity

    raw = json.loads(path.read_text())
    return HubConfig(url=str(raw["url"]), identity=PublicIdentity.from_json(raw["identity"]))


def save_hub_config(data_dir: Path, url: str, identity: PublicIdentity) -> None:
    folder = sync_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / "hub.json").write_text(
        json.dumps({"url": url, "identity": identity.to_json()}, indent=2)
    )


def hub_update_source(settings: EdgeSettings) -> str | None:
    """The hub's update repository (``<hub>/updates/``), when a hub is configured and the
    box has been provisioned with a trusted root."""
    data_dir = settings.server.data_dir
    config = hub_config(data_dir)
    if config is None:
        return None
    if not (data_dir / "updates" / "metadata" / "root.json").exists():
        return None
    url = settings.server.sync.hub_url or config.url
    return f"{url.rstrip('/')}/updates/"


def case_payload(store: CaseStore, case_id: str) -> bytes | None:
    """The case as the hub receives it; None while its analysis is still running."""
    case = store.get(case_id)
    if case is None or not case.status.finished:
        return None
    photos = []
    for photo in case.photos:
        data = (store.photo_root / case.id / photo.file).read_bytes()
        photos.append(
            {
                "index": photo.index,
                "sha256": photo.sha256,
                "jpeg_b64": base64.b64encode(data).decode("ascii"),
            }
        )
    payload: dict[str, Any] = {
        "format": PAYLOAD_FORMAT,
        "case_id": case.id,
        "created_at": case.created_at,
        "context": case.context.model_dump(mode="json"),
        "photos": photos,
        "result": case.result,
        "status": case.status.value,
    }
    return json.dumps(payload, ensure_ascii=False).encode()


def build_agent(settings: EdgeSettings, store: CaseStore, outbox: Outbox) -> SyncAgent | None:
    """The agent, or None when sync is off or not configured (no hub, no clinic keys)."""
    sync = settings.server.sync
    data_dir = settings.server.data_dir
    config = hub_config(data_dir)
    if not sync.enabled or config is None:
        return None
    from sync_agent.agent import SyncAgent
    from sync_agent.errors import SyncError

    try:
        keys = clinic_keys(data_dir)
    except SyncError:
        return None
    url = sync.hub_url or config.url

    def on_review(case_id: str, review: dict[str, Any]) -> None:
        store.set_review(case_id, review)

    return SyncAgent(
        outbox,
        keys,
        config.identity,
        sync.model_copy(update={"hub_url": url}),
        payload_for=lambda case_id: case_payload(store, case_id),
        on_review=on_review,
    )
