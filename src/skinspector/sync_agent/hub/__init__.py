"""The review hub: receives sealed cases from clinics, serves the dermatologists' review
UI, and seals each review back for its clinic.

* :func:`create_hub_app` / :func:`start_hub`: the aiohttp service;
* :class:`HubStore`: its SQLite storage; :class:`HubSettings`: its settings;
* :func:`sign_request`: the clinic side of the signed review fetch.

Names are imported lazily, so a clinic box that only needs
:mod:`skinspector.sync_agent.hub.auth` does not load the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skinspector.sync_agent.hub.app import create_hub_app
    from skinspector.sync_agent.hub.auth import sign_request
    from skinspector.sync_agent.hub.server import RunningHub, run_hub_forever, start_hub
    from skinspector.sync_agent.hub.settings import HubSettings
    from skinspector.sync_agent.hub.store import HubStore, load_or_create_hub_keys

__all__ = [
    "HubSettings",
    "HubStore",
    "RunningHub",
    "create_hub_app",
    "load_or_create_hub_keys",
    "run_hub_forever",
    "sign_request",
    "start_hub",
]

_HOMES = {
    "HubSettings": "settings",
    "HubStore": "store",
    "RunningHub": "server",
    "create_hub_app": "app",
    "load_or_create_hub_keys": "store",
    "run_hub_forever": "server",
    "sign_request": "auth",
    "start_hub": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
