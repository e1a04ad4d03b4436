"""The dermatologist's review UI: server-rendered HTML, no JavaScript.

Pages are Jinja2 templates from ``clients/review`` rendered with autoescaping
(:mod:`review_hub.ui.pages`); views pass plain data and nothing from a case payload
reaches a page unescaped. Every response carries a strict Content-Security-Policy
(:data:`CSP`: no script at all, styles and images from the hub only), set in
:mod:`review_hub.app`.

* :mod:`~review_hub.ui.sessions`: session cookie, the middleware guarding ``/review``, CSRF;
* :mod:`~review_hub.ui.login`: sign-in (rate-limited) and sign-out;
* :mod:`~review_hub.ui.queue`: the review queue;
* :mod:`~review_hub.ui.case`: the case page, its photos and the review submission;
* :mod:`~review_hub.ui.documents`: what the pages show of a case document;
* :mod:`~review_hub.ui.pages`: templates, rendering, error pages, the stylesheet.
"""

from __future__ import annotations

from aiohttp import web

from review_hub.ui import case, login, pages, queue
from review_hub.ui.pages import error_page, setup_templates
from review_hub.ui.sessions import session_middleware

__all__ = ["CSP", "error_page", "routes", "session_middleware", "setup_templates"]

#: The review UI's Content-Security-Policy: no script, no plugins, no framing.
CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

#: Every route of the review UI (and its stylesheet).
routes: list[web.AbstractRouteDef] = [*login.routes, *queue.routes, *case.routes, *pages.routes]
