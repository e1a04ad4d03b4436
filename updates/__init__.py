"""Signed update bundles: build, publish with TUF, verify and activate on the clinic box.

Maintainer side: :func:`build_bundle` (``build``), :class:`KeyStore` (``keys``),
:class:`Repository` (``repository``: TUF metadata, publish, refresh, key rotation).
Clinic side: :class:`UpdateClient` (``client``: trusted root, refresh, download),
:class:`UpdateSource` (``fetcher``: hub URL or directory), :class:`SlotStore` (``slots``:
A/B install and atomic switch), :func:`run_update` (``service``: the whole update), the
smoke test (``smoke``) and the clock rules (``clock``). Bundle files are checked against
their manifest by ``integrity``; the model card is read by ``card``.

Names are imported lazily: the edge server's settings import ``updates.settings`` without
loading python-tuf.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from updates.build import build_bundle
    from updates.client import UpdateClient
    from updates.fetcher import UpdateSource
    from updates.keys import KeyStore
    from updates.repository import ExpiryPolicy, Repository
    from updates.service import UpdateOutcome, run_update
    from updates.settings import UpdateSettings
    from updates.slots import SlotStore

__all__ = [
    "ExpiryPolicy",
    "KeyStore",
    "Repository",
    "SlotStore",
    "UpdateClient",
    "UpdateOutcome",
    "UpdateSettings",
    "UpdateSource",
    "build_bundle",
    "run_update",
]

_HOMES = {
    "ExpiryPolicy": "repository",
    "KeyStore": "keys",
    "Repository": "repository",
    "SlotStore": "slots",
    "UpdateClient": "client",
    "UpdateOutcome": "service",
    "UpdateSettings": "settings",
    "UpdateSource": "fetcher",
    "build_bundle": "build",
    "run_update": "service",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
