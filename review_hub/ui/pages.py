"""Rendering review-UI pages: the Jinja2 environment, the page helper and error pages.

Templates are ``clients/review/*.html`` (a ``layout.html`` every page extends), loaded
through ``jinja2.PackageLoader`` so an installed wheel renders like a checkout. Handlers
pass plain data; all markup is in the templates, and every value is HTML-escaped when it
is output (autoescaping, quotes included), so nothing from a case payload reaches a page
unescaped.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from review_hub.state import SESSION, STYLESHEET

__all__ = [
    "Handler",
    "Refused",
    "error_page",
    "refusals",
    "render_page",
    "routes",
    "setup_templates",
    "utc_time",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
routes = web.RouteTableDef()

_TEMPLATES_PACKAGE = "clients"
_TEMPLATES_FOLDER = "review"


def _escaped(value: object) -> Markup:
    """Every ``{{ value }}`` of a page, HTML-escaped (``None`` shows as nothing).

    Installed as the environment's ``finalize``: it runs before autoescaping, which then
    leaves its result alone. Escaping here rather than in MarkupSafe keeps the entity
    forms of :func:`html.escape` (``&#x27;``, ``&quot;``) that the hub has always written;
    markup built by the templates themselves (macros, ``caller()``) passes through.
    """
    if hasattr(value, "__html__"):
        return escape(value)  # markup the templates made (macros): kept as it is
    text = html.escape("" if value is None else str(value), quote=True)
    return Markup(text)  # noqa: S704 - escaped on the line above


def utc_time(timestamp: float | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM UTC`` (the ``utc`` filter); ``None`` -> ``""``."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def setup_templates(app: web.Application) -> None:
    """Attach the review UI's Jinja2 environment and stylesheet to ``app``."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(_TEMPLATES_PACKAGE, _TEMPLATES_FOLDER),
        autoescape=True,
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        default_helpers=False,
        filters={"utc": utc_time},
    )
    folder = resources.files(_TEMPLATES_PACKAGE).joinpath(_TEMPLATES_FOLDER)
    app[STYLESHEET] = folder.joinpath("review.css").read_text(encoding="utf-8")


def render_page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Render ``template`` as an HTML response.

    The layout gets ``session``: the signed-in reviewer (name and sign-out form), or
    ``None`` on pages outside a session.
    """
    values = {"session": request.get(SESSION), **context}
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    if headers:
        response.headers.update(headers)
    return response


def error_page(request: web.Request, status: int, heading: str, message: str) -> web.Response:
    """A plain HTML error page (also used by the app's error middleware)."""
    return render_page(
        request, "message.html", {"heading": heading, "message": message}, status=status
    )


class Refused(Exception):
    """Raised by a view to answer with an HTML error page (see :func:`refusals`)."""

    def __init__(self, status: int, heading: str, message: str) -> None:
        super().__init__(message)
        self.status, self.heading, self.message = status, heading, message


def refusals(handler: Handler) -> Handler:
    """Decorate a view so that :class:`Refused` becomes its error page."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return error_page(request, exc.status, exc.heading, exc.message)

    wrapped.__doc__ = handler.__doc__
    return wrapped


@routes.get("/static/review.css")
async def stylesheet(request: web.Request) -> web.Response:
    """The review UI's stylesheet (public: the login page needs it)."""
    return web.Response(
        text=request.app[STYLESHEET],
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )
