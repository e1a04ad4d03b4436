"""Typed application keys of the hub app: every shared object, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from string import Template

from aiohttp import web

from review_hub.settings import HubSettings
from review_hub.store import HubStore
from sync_agent.keys import PartyKeys

__all__ = ["DUMMY_HASH", "HUB_KEYS", "SETTINGS", "STORE", "TEMPLATES", "Templates"]


@dataclass(frozen=True, slots=True)
class Templates:
    """The review UI's page templates and stylesheet, read once at start-up."""

    pages: dict[str, Template]
    stylesheet: str

    def render(self, name: str, **values: str) -> str:
        """Fill template ``name``; every value must already be escaped HTML."""
        return self.pages[name].substitute(values)


SETTINGS = web.AppKey("hub_settings", HubSettings)
STORE = web.AppKey("hub_store", HubStore)
HUB_KEYS = web.AppKey("hub_keys", PartyKeys)
TEMPLATES = web.AppKey("hub_templates", Templates)
DUMMY_HASH = web.AppKey("hub_dummy_hash", str)
