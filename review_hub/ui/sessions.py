"""Review-UI sessions: the cookie, the middleware that requires a session, CSRF checks.

``POST /review/login`` sets an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` and
``__Host-`` prefixed when the hub is served over TLS) holding a random 256-bit token; the
database keeps only its SHA-256, with a per-session CSRF token and an absolute expiry.
Every ``/review`` route except the login page needs a live session: pages redirect to the
login page, photo fetches answer 401. Every form post (review, logout) must carry the
session's CSRF token (403 otherwise), and a cross-site ``Origin`` header is refused on any
post.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDictProxy

from review_hub.settings import HubSettings
from review_hub.state import SESSION, SETTINGS, STORE
from review_hub.ui.pages import Handler, Refused, error_page

__all__ = [
    "LOGIN_PATH",
    "checked_form",
    "cookie_name",
    "cookie_path",
    "session_middleware",
]

LOGIN_PATH = "/review/login"
_PHOTO_SUFFIX = "/photos/"


def cookie_name(settings: HubSettings) -> str:
    """The session cookie's name (``__Host-`` prefixed when cookies are Secure)."""
    return "__Host-skinspector_review" if settings.cookies_secure else "skinspector_review"


def cookie_path(settings: HubSettings) -> str:
    """The session cookie's path (``__Host-`` cookies must use ``/``)."""
    return "/" if settings.cookies_secure else "/review"


def _is_review_path(path: str) -> bool:
    return path == "/review" or path.startswith("/review/")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser cross-site post (browsers send Origin on posts)
    return urlsplit(origin).netloc == request.host


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a live session on every ``/review`` route but the login page."""
    if not _is_review_path(request.path):
        return await handler(request)
    if request.method == "POST" and not _same_origin(request):
        return error_page(request, 403, "Forbidden", "Cross-site form posts are refused.")
    if request.path == LOGIN_PATH:
        return await handler(request)
    settings, store = request.app[SETTINGS], request.app[STORE]
    token = request.cookies.get(cookie_name(settings), "")
    session = await asyncio.to_thread(store.get_session, token) if token else None
    if session is None:
        if _PHOTO_SUFFIX in request.path:
            return web.Response(status=401, text="sign in to see photos")
        raise web.HTTPSeeOther(LOGIN_PATH)
    request[SESSION] = session
    return await handler(request)


async def checked_form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form, after checking its CSRF token against the session's.

    Raises :class:`~review_hub.ui.pages.Refused` (403) when the token is missing or wrong.
    """
    session = request[SESSION]
    form = await request.post()
    token = form.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(
        token.encode("utf-8"), session.csrf_token.encode("utf-8")
    ):
        raise Refused(403, "Forbidden", "The form is stale or forged: reload the page and retry.")
    return form
