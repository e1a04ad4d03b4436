"""Signing in and out of the review UI.

Failed logins are limited per username and per client address in a sliding window
(:class:`~review_hub.settings.HubSettings`); over the limit the login answers 429 with
``Retry-After`` without checking the password. Unknown usernames cost the same scrypt work
as real ones and give the same message.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from review_hub.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from review_hub.state import DUMMY_HASH, SETTINGS, STORE
from review_hub.store import InvalidUsername, normalise_username
from review_hub.ui.pages import refusals, render_page
from review_hub.ui.sessions import LOGIN_PATH, checked_form, cookie_name, cookie_path

__all__ = ["client_address", "login", "login_form", "logout", "routes"]

log = logging.getLogger("skinspector.hub")
routes = web.RouteTableDef()

#: How much of a refused username is written back into the form.
_ECHO_USERNAME = 64


def _login_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str = "",
    username: str = "",
    headers: dict[str, str] | None = None,
) -> web.Response:
    context = {"error": error, "username": username, "max_password": MAX_PASSWORD_LENGTH}
    return render_page(request, "login.html", context, status=status, headers=headers)


def client_address(request: web.Request) -> str:
    """The client's address for rate limits: the peer, or, when the peer is one of the
    configured ``trusted_proxies``, the last address in ``trusted_proxy_header`` (the one
    that proxy saw; earlier entries are the client's own claims)."""
    settings = request.app[SETTINGS]
    peer = request.remote or "unknown"
    header = settings.trusted_proxy_header
    if header is None or peer not in settings.trusted_proxies:
        return peer
    forwarded = [part.strip() for part in request.headers.get(header, "").split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[-1][:64] if forwarded else peer


@routes.get(LOGIN_PATH)
async def login_form(request: web.Request) -> web.Response:
    """The sign-in page."""
    return _login_page(request)


@routes.post(LOGIN_PATH)
async def login(request: web.Request) -> web.Response:
    """Check the password (rate-limited), then start a session and go to the queue."""
    settings, store = request.app[SETTINGS], request.app[STORE]
    form = await request.post()
    raw_username = form.get("username")
    password = form.get("password")
    if not isinstance(raw_username, str) or not isinstance(password, str):
        return _login_page(request, status=400, error="Enter your username and password.")
    client = client_address(request)
    try:
        username = normalise_username(raw_username)
    except InvalidUsername:
        username = "\x00invalid"  # counted like a real name: no hint which names exist
    # Reserve the attempt (counted as a failure) before any hashing: concurrent wrong
    # passwords cannot all pass the limit check together.
    retry_after = await asyncio.to_thread(
        lambda: store.reserve_login_attempt(
            username,
            client,
            window=settings.login_window_seconds,
            max_user=settings.max_login_failures_per_user,
            max_client=settings.max_login_failures_per_ip,
        )
    )
    if retry_after is not None:
        minutes = max(1, round(retry_after / 60))
        return _login_page(
            request,
            status=429,
            error=f"Too many failed sign-ins. Try again in about {minutes} minute(s).",
            username=raw_username[:_ECHO_USERNAME],
            headers={"Retry-After": str(int(retry_after) + 1)},
        )
    reviewer = await asyncio.to_thread(store.get_reviewer, username)
    usable = reviewer is not None and reviewer.disabled_at is None
    stored = reviewer.password_hash if reviewer is not None and usable else request.app[DUMMY_HASH]
    matches = await asyncio.to_thread(verify_password, password, stored)
    if not (matches and usable and reviewer is not None):
        log.warning("failed review login")  # already counted by the reservation
        return _login_page(
            request,
            status=401,
            error="Wrong username or password.",
            username=raw_username[:_ECHO_USERNAME],
        )
    await asyncio.to_thread(store.clear_login_failures, username)
    if needs_rehash(reviewer.password_hash):
        new_hash = await asyncio.to_thread(hash_password, password)
        await asyncio.to_thread(store.set_password_hash, username, new_hash)
    token, _session = await asyncio.to_thread(
        store.create_session, username, settings.session_ttl_seconds
    )
    response = web.HTTPSeeOther("/review/")
    response.set_cookie(
        cookie_name(settings),
        token,
        max_age=int(settings.session_ttl_seconds),
        path=cookie_path(settings),
        secure=settings.cookies_secure,
        httponly=True,
        samesite="Strict",
    )
    raise response


@routes.post("/review/logout")
@refusals
async def logout(request: web.Request) -> web.Response:
    """End the session (CSRF-checked) and go back to the sign-in page."""
    settings = request.app[SETTINGS]
    await checked_form(request)
    token = request.cookies.get(cookie_name(settings), "")
    await asyncio.to_thread(request.app[STORE].delete_session, token)
    response = web.HTTPSeeOther(LOGIN_PATH)
    response.del_cookie(cookie_name(settings), path=cookie_path(settings))
    raise response
