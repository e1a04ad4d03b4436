"""Typed application and request keys of the hub app: every shared object, in one place.

The review UI's Jinja2 environment is kept under ``aiohttp_jinja2.APP_KEY`` (see
:func:`review_hub.ui.pages.setup_templates`).
"""

from __future__ import annotations

from aiohttp import web

from review_hub.settings import HubSettings
from review_hub.store import HubStore, SessionRecord
from review_hub.upload import UploadGate
from sync_agent.keys import PartyKeys

__all__ = ["DUMMY_HASH", "HUB_KEYS", "SESSION", "SETTINGS", "STORE", "STYLESHEET", "UPLOADS"]

SETTINGS = web.AppKey("hub_settings", HubSettings)
STORE = web.AppKey("hub_store", HubStore)
HUB_KEYS = web.AppKey("hub_keys", PartyKeys)
DUMMY_HASH = web.AppKey("hub_dummy_hash", str)
#: Envelope uploads in flight (503 beyond the cap).
UPLOADS = web.AppKey("hub_uploads", UploadGate)
#: The review UI's stylesheet, read once at start-up.
STYLESHEET = web.AppKey("hub_stylesheet", str)
#: The signed-in reviewer's session, set by the session middleware on ``/review`` routes.
SESSION = web.RequestKey("review_session", SessionRecord)
