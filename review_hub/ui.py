"""The dermatologist's review UI: server-rendered HTML, no JavaScript.

Pages are ``string.Template`` files from ``skinspector/clients/review`` filled with values
that are HTML-escaped here (:func:`h`); nothing from a case payload reaches a page
unescaped. Every response carries a strict Content-Security-Policy (no script at all,
styles and images from the hub only), set in :mod:`review_hub.app`.

Sessions: ``POST /review/login`` checks the scrypt hash and sets an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` and ``__Host-`` prefixed when the hub is served over
TLS) holding a random 256-bit token; the database keeps only its SHA-256, with a per-session
CSRF token and an absolute expiry. Every ``/review`` route except the login page needs a
live session: pages redirect to the login page, photo fetches answer 401. Every form post
(review, logout) must carry the session's CSRF token (403 otherwise), and a cross-site
``Origin`` header is refused on any post.

Failed logins are limited per username and per client address in a sliding window
(:class:`~review_hub.settings.HubSettings`); over the limit the login answers
429 with ``Retry-After`` without checking the password. Unknown usernames cost the same
scrypt work as real ones and give the same message.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from review_hub.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from review_hub.payloads import (
    URGENCIES,
    ReviewFields,
    ai_action,
    build_review_payload,
)
from review_hub.settings import HubSettings
from review_hub.state import (
    DUMMY_HASH,
    HUB_KEYS,
    SETTINGS,
    STORE,
    TEMPLATES,
    Templates,
)
from review_hub.store import (
    AlreadyReviewed,
    CaseDetail,
    InvalidUsername,
    QueueItem,
    SessionRecord,
    normalise_username,
)
from sync_agent.envelope import seal

__all__ = [
    "CSP",
    "SESSION",
    "error_page",
    "h",
    "load_templates",
    "routes",
    "session_middleware",
]

log = logging.getLogger("skinspector.hub")
routes = web.RouteTableDef()
SESSION = web.RequestKey("review_session", SessionRecord)

#: The review UI's Content-Security-Policy: no script, no plugins, no framing.
CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

LOGIN_PATH = "/review/login"
_TEMPLATE_NAMES = ("layout", "login", "queue", "case", "review_form", "message")
_PHOTO_SUFFIX = "/photos/"
_URGENCY_CLASS = {
    "self-care": "self-care",
    "routine referral": "routine",
    "urgent referral": "urgent",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- rendering


def h(value: object) -> str:
    """HTML-escape anything (quotes included) for text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


def load_templates() -> Templates:
    """Read the page templates and the stylesheet from ``skinspector/clients/review``."""
    folder = resources.files("clients").joinpath("review")
    pages = {
        name: Template(folder.joinpath(f"{name}.html").read_text(encoding="utf-8"))
        for name in _TEMPLATE_NAMES
    }
    return Templates(pages, folder.joinpath("review.css").read_text(encoding="utf-8"))


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _cookie_name(settings: HubSettings) -> str:
    return "__Host-skinspector_review" if settings.cookies_secure else "skinspector_review"


def _page(
    request: web.Request,
    title: str,
    content: str,
    *,
    status: int = 200,
    session: SessionRecord | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    templates = request.app[TEMPLATES]
    account = ""
    if session is not None:
        account = (
            f'<span class="who">{h(session.display_name)}</span>'
            '<form method="post" action="/review/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{h(session.csrf_token)}">'
            '<button type="submit">Sign out</button></form>'
        )
    body = templates.render("layout", title=h(title), account=account, content=content)
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


def error_page(request: web.Request, status: int, heading: str, message: str) -> web.Response:
    """A plain HTML error page (also used by the app's error middleware)."""
    content = request.app[TEMPLATES].render("message", heading=h(heading), message=h(message))
    return _page(request, heading, content, status=status, session=request.get(SESSION))


def _list(items: Iterable[str], css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    entries = "".join(f"<li>{item}</li>" for item in items)
    return f"<ul{cls}>{entries}</ul>" if entries else '<p class="none">None stated.</p>'


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item) for item in value if isinstance(item, (str, int, float)) and str(item)]


def _badge(action: str | None) -> str:
    if action is None:
        return '<span class="badge unknown">no AI action</span>'
    return f'<span class="badge {_URGENCY_CLASS[action]}">{h(action)}</span>'


def _context_summary(document: dict[str, Any]) -> str:
    context = document.get("context")
    if not isinstance(context, dict):
        return ""
    parts = []
    if isinstance(context.get("age_years"), int):
        parts.append(f"{context['age_years']} y")
    if isinstance(context.get("sex"), str):
        parts.append(context["sex"])
    if isinstance(context.get("body_site"), str):
        parts.append(context["body_site"])
    return h(", ".join(parts))


# --------------------------------------------------------------------------- sessions


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
    token = request.cookies.get(_cookie_name(settings), "")
    session = await asyncio.to_thread(store.get_session, token) if token else None
    if session is None:
        if _PHOTO_SUFFIX in request.path:
            return web.Response(status=401, text="sign in to see photos")
        raise web.HTTPSeeOther(LOGIN_PATH)
    request[SESSION] = session
    return await handler(request)


async def _checked_form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form, after checking its CSRF token against the session's."""
    session = request[SESSION]
    form = await request.post()
    token = form.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(
        token.encode("utf-8"), session.csrf_token.encode("utf-8")
    ):
        raise _Refused(403, "Forbidden", "The form is stale or forged: reload the page and retry.")
    return form


class _Refused(Exception):
    """Answer with an HTML error page."""

    def __init__(self, status: int, heading: str, message: str) -> None:
        super().__init__(message)
        self.status, self.heading, self.message = status, heading, message


def _refusals(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as exc:
            return error_page(request, exc.status, exc.heading, exc.message)

    wrapped.__doc__ = handler.__doc__
    return wrapped


# --------------------------------------------------------------------------- login


def _login_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str = "",
    username: str = "",
    headers: dict[str, str] | None = None,
) -> web.Response:
    error_html = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    content = request.app[TEMPLATES].render(
        "login", error=error_html, username=h(username), max_password=str(MAX_PASSWORD_LENGTH)
    )
    return _page(request, "Sign in", content, status=status, headers=headers)


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
    client = request.remote or "unknown"
    try:
        username = normalise_username(raw_username)
    except InvalidUsername:
        username = "\x00invalid"  # counted like a real name: no hint which names exist
    retry_after = await asyncio.to_thread(
        lambda: store.login_retry_after(
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
            username=raw_username[:64],
            headers={"Retry-After": str(int(retry_after) + 1)},
        )
    reviewer = await asyncio.to_thread(store.get_reviewer, username)
    usable = reviewer is not None and reviewer.disabled_at is None
    stored = reviewer.password_hash if reviewer is not None and usable else request.app[DUMMY_HASH]
    matches = await asyncio.to_thread(verify_password, password, stored)
    if not (matches and usable and reviewer is not None):
        await asyncio.to_thread(
            store.record_login_failure, username, client, window=settings.login_window_seconds
        )
        log.warning("failed review login")
        return _login_page(
            request, status=401, error="Wrong username or password.", username=raw_username[:64]
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
        _cookie_name(settings),
        token,
        max_age=int(settings.session_ttl_seconds),
        path="/" if settings.cookies_secure else "/review",
        secure=settings.cookies_secure,
        httponly=True,
        samesite="Strict",
    )
    raise response


@routes.post("/review/logout")
@_refusals
async def logout(request: web.Request) -> web.Response:
    """End the session (CSRF-checked) and go back to the sign-in page."""
    settings = request.app[SETTINGS]
    await _checked_form(request)
    token = request.cookies.get(_cookie_name(settings), "")
    await asyncio.to_thread(request.app[STORE].delete_session, token)
    response = web.HTTPSeeOther(LOGIN_PATH)
    response.del_cookie(_cookie_name(settings), path="/" if settings.cookies_secure else "/review")
    raise response


# --------------------------------------------------------------------------- queue


def _queue_row(item: QueueItem) -> str:
    document = item.document
    photos = document.get("photos")
    count = len(photos) if isinstance(photos, list) else 0
    result = document.get("result")
    flags = 0
    if isinstance(result, dict) and isinstance(result.get("assessment"), dict):
        flags = len(_strings(result["assessment"].get("red_flags")))
    flag_text = f'<span class="flags">{flags} red flag(s)</span>' if flags else ""
    return (
        "<tr>"
        f"<td>{_badge(ai_action(document))} {flag_text}</td>"
        f"<td>{h(_when(item.received_at))}</td>"
        f"<td>{h(item.clinic_name)}</td>"
        f"<td>{_context_summary(document)}</td>"
        f"<td>{count}</td>"
        f'<td><a href="/review/cases/{h(item.key)}">Open case</a></td>'
        "</tr>"
    )


@routes.get("/review")
async def review_root(request: web.Request) -> web.Response:
    """``/review`` -> ``/review/``."""
    raise web.HTTPSeeOther("/review/")


@routes.get("/review/")
async def queue_page(request: web.Request) -> web.Response:
    """Unreviewed cases, most urgent AI action first, then oldest first."""
    items = await asyncio.to_thread(request.app[STORE].queue)
    notice = ""
    if request.query.get("sent") == "1":
        notice = (
            '<p class="notice" role="status">Review saved and sealed for the clinic; it is '
            "delivered at the clinic's next sync.</p>"
        )
    if items:
        table = (
            '<table class="queue"><thead><tr><th>AI action</th><th>Received</th>'
            "<th>Clinic</th><th>Patient, site</th><th>Photos</th><th></th></tr></thead>"
            f"<tbody>{''.join(_queue_row(item) for item in items)}</tbody></table>"
        )
    else:
        table = '<p class="none">No cases are waiting for review.</p>'
    content = request.app[TEMPLATES].render(
        "queue", count=str(len(items)), notice=notice, table=table
    )
    return _page(request, "Review queue", content, session=request[SESSION])


# --------------------------------------------------------------------------- case page


def _photos_html(case: CaseDetail) -> str:
    if not case.photos:
        return '<p class="none">No photos were sent.</p>'
    figures = []
    for photo in case.photos:
        url = f"/review/cases/{h(case.key)}/photos/{photo.index}"
        figures.append(
            f'<figure><a href="{url}"><img src="{url}" alt="Photo {photo.index}"></a>'
            f"<figcaption>Photo {photo.index} ({photo.bytes // 1024} KiB)</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(figures)}</div>'


def _context_html(document: dict[str, Any]) -> str:
    context = document.get("context")
    if not isinstance(context, dict):
        context = {}
    labels = (
        ("age_years", "Age (years)"),
        ("sex", "Sex"),
        ("body_site", "Body site"),
        ("duration", "Duration"),
        ("language", "Language"),
    )
    rows = [
        f"<dt>{label}</dt><dd>{h(context[key])}</dd>"
        for key, label in labels
        if context.get(key) not in (None, "")
    ]
    symptoms = _strings(context.get("symptoms"))
    if symptoms:
        rows.append(f"<dt>Symptoms</dt><dd>{h(', '.join(symptoms))}</dd>")
    notes = context.get("notes")
    if isinstance(notes, str) and notes.strip():
        rows.append(f'<dt>Notes</dt><dd class="text">{h(notes)}</dd>')
    if not rows:
        return '<p class="none">The clinic sent no notes.</p>'
    return f'<dl class="facts">{"".join(rows)}</dl>'


def _conditions(value: Any) -> list[str]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and item.get("name"):
            likelihood = item.get("likelihood")
            suffix = f' <span class="likelihood">({h(likelihood)})</span>' if likelihood else ""
            out.append(f"{h(item['name'])}{suffix}")
        elif isinstance(item, str):
            out.append(h(item))
    return out


def _assessment_html(document: dict[str, Any]) -> str:
    result = document.get("result")
    status = document.get("status")
    if not isinstance(result, dict):
        return (
            '<p class="none">No AI result came with this case'
            f"{f' (status: {h(status)})' if status else ''}.</p>"
        )
    parts = []
    audit = result.get("audit")
    demo = result.get("demo_warning") or (isinstance(audit, dict) and audit.get("demo"))
    if demo:
        text = result.get("demo_warning") if isinstance(result.get("demo_warning"), str) else ""
        parts.append(
            '<p class="warning" role="alert">This result came from a DEMO model (random '
            f"weights): it means nothing. {h(text)}</p>"
        )
    if isinstance(audit, dict) and isinstance(audit.get("intended_use"), str):
        parts.append(
            f'<p class="note intended-use">Model bundle {h(audit.get("bundle_version"))}, '
            f"intended use: {h(audit['intended_use'])}</p>"
        )
    assessment = result.get("assessment")
    if not isinstance(assessment, dict):
        parts.append(
            '<p class="none">The AI did not assess this case'
            f"{f' (status: {h(status)})' if status else ''}; review the photos directly.</p>"
        )
        if isinstance(result.get("disclaimer"), str):
            parts.append(f'<p class="disclaimer">{h(result["disclaimer"])}</p>')
        return "".join(parts)
    action = ai_action(document)
    parts.append(f"<p>Recommended action: {_badge(action)}</p>")
    red_flags = _strings(assessment.get("red_flags"))
    if red_flags:
        parts.append(
            f'<div class="red-flags"><h3>Red flags</h3>{_list(h(flag) for flag in red_flags)}</div>'
        )
    rules = _strings(result.get("red_flag_rules"))
    if rules:
        parts.append(f'<p class="rules">Safety rules triggered: {h(", ".join(rules))}</p>')
    parts.append(f"<h3>Findings</h3>{_list(h(f) for f in _strings(assessment.get('findings')))}")
    parts.append(
        f"<h3>Likely conditions</h3>{_list(_conditions(assessment.get('likely_conditions')))}"
    )
    if isinstance(assessment.get("disclaimer"), str):
        parts.append(f'<p class="disclaimer">{h(assessment["disclaimer"])}</p>')
    return "".join(parts)


def _references_html(document: dict[str, Any]) -> str:
    result = document.get("result")
    references = result.get("references") if isinstance(result, dict) else None
    if not isinstance(references, list):
        return '<p class="none">No references.</p>'
    cited = [r for r in references if isinstance(r, dict) and r.get("cited") is True]
    if not cited:
        return '<p class="none">The assessment cited none of the retrieved references.</p>'
    blocks = []
    for ref in cited:
        title = (
            " — ".join(str(part) for part in (ref.get("title"), ref.get("heading")) if part)
            or "Untitled"
        )
        source = ref.get("source")
        page = ref.get("page")
        where = ", ".join(
            part for part in (str(source) if source else "", f"p. {page}" if page else "") if part
        )
        where_html = f' <span class="source">({h(where)})</span>' if where else ""
        blocks.append(
            f"<details><summary>[{h(ref.get('number', '?'))}] {h(title)}{where_html}</summary>"
            f'<p class="text">{h(ref.get("text", ""))}</p></details>'
        )
    return "".join(blocks)


def _review_form(
    request: web.Request, case: CaseDetail, *, error: str = "", values: dict[str, str] | None = None
) -> str:
    values = values or {}
    # No default from the AI's action: the reviewer chooses the urgency explicitly.
    chosen = values.get("urgency", "")
    options = ['<option value="">Choose…</option>'] + [
        f'<option value="{h(u)}"{" selected" if u == chosen else ""}>{h(u)}</option>'
        for u in URGENCIES
    ]
    return request.app[TEMPLATES].render(
        "review_form",
        error=f'<p class="error" role="alert">{h(error)}</p>' if error else "",
        key=h(case.key),
        csrf=h(request[SESSION].csrf_token),
        diagnosis=h(values.get("diagnosis", "")),
        management=h(values.get("management", "")),
        message=h(values.get("message", "")),
        urgency_options="".join(options),
    )


def _review_done(case: CaseDetail) -> str:
    review = case.review
    if review is None:
        return ""
    rows = [
        ("Diagnosis", review.diagnosis),
        ("Management", review.management),
        ("Urgency", review.urgency),
        ("Message to the clinic", review.message),
        ("Reviewed by", f"{review.reviewer_name} on {_when(review.created_at)}"),
    ]
    facts = "".join(f'<dt>{h(k)}</dt><dd class="text">{h(v)}</dd>' for k, v in rows if v)
    return (
        f'<dl class="facts">{facts}</dl><p class="notice">This review is sealed for the clinic '
        "and delivered at its next sync.</p>"
    )


def _case_page(
    request: web.Request, case: CaseDetail, *, status: int = 200, form: str | None = None
) -> web.Response:
    document = case.document
    state = "reviewed" if case.reviewed_at is not None else "awaiting review"
    warning = ""
    if not case.clinic_active:
        warning = (
            '<p class="warning" role="alert">This clinic\'s enrolment has been revoked: it '
            "can no longer fetch reviews.</p>"
        )
    review_html = (
        _review_done(case)
        if case.review is not None
        else (form if form is not None else _review_form(request, case))
    )
    content = request.app[TEMPLATES].render(
        "case",
        clinic=h(case.clinic_name),
        case_id=h(case.case_id),
        received=h(_when(case.received_at)),
        updated=h(_when(case.updated_at)),
        state=h(state),
        warning=warning,
        photos=_photos_html(case),
        context=_context_html(document),
        assessment=_assessment_html(document),
        references=_references_html(document),
        review=review_html,
    )
    return _page(request, "Case", content, status=status, session=request[SESSION])


async def _case_or_404(request: web.Request) -> CaseDetail:
    key = request.match_info["key"]
    case = await asyncio.to_thread(request.app[STORE].get_case, key)
    if case is None:
        raise _Refused(404, "Not found", "There is no such case.")
    return case


@routes.get("/review/cases/{key:[0-9a-f]{32}}")
@_refusals
async def case_page(request: web.Request) -> web.Response:
    """One case: photos, the clinic's notes, the AI assessment and references, the form."""
    return _case_page(request, await _case_or_404(request))


@routes.get("/review/cases/{key:[0-9a-f]{32}}/photos/{index:[0-9]{1,4}}")
async def photo(request: web.Request) -> web.Response:
    """One photo of a case (JPEG; session required, 401 without)."""
    data = await asyncio.to_thread(
        request.app[STORE].get_photo, request.match_info["key"], int(request.match_info["index"])
    )
    if data is None:
        return web.Response(status=404, text="no such photo")
    return web.Response(
        body=data,
        content_type="image/jpeg",
        headers={"Cache-Control": "private, no-store"},
    )


@routes.post("/review/cases/{key:[0-9a-f]{32}}/review")
@_refusals
async def submit_review(request: web.Request) -> web.Response:
    """Store the review, seal it for the clinic, take the case out of the queue."""
    form = await _checked_form(request)
    case = await _case_or_404(request)
    if case.review is not None:
        raise _Refused(409, "Already reviewed", "Another review of this case was saved first.")
    values = {
        name: value
        for name in ("diagnosis", "management", "urgency", "message")
        if isinstance(value := form.get(name, ""), str)
    }
    try:
        fields = ReviewFields.model_validate(values)
    except ValidationError as exc:
        names = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        error = f"Please check: {', '.join(names)}."
        return _case_page(
            request, case, status=400, form=_review_form(request, case, error=error, values=values)
        )
    session = request[SESSION]
    store, keys = request.app[STORE], request.app[HUB_KEYS]
    clinic = await asyncio.to_thread(store.get_clinic, case.clinic_id)
    if clinic is None:  # pragma: no cover - cases reference clinics
        raise _Refused(500, "Error", "The clinic of this case is missing.")
    reviewed_at = time.time()
    envelope_id = uuid.uuid4().hex
    payload = build_review_payload(
        case_id=case.case_id, reviewer=session.display_name, fields=fields, reviewed_at=reviewed_at
    )
    envelope = await asyncio.to_thread(
        lambda: seal(
            payload,
            kind="review",
            sender=keys,
            recipient=clinic.identity(),
            envelope_id=envelope_id,
            created_at=reviewed_at,
        )
    )
    try:
        await asyncio.to_thread(
            lambda: store.add_review(
                case_row=case.row,
                reviewer=session.username,
                reviewer_name=session.display_name,
                fields=fields,
                created_at=reviewed_at,
                envelope_id=envelope_id,
                envelope=envelope,
            )
        )
    except AlreadyReviewed:
        raise _Refused(
            409, "Already reviewed", "Another review of this case was saved first."
        ) from None
    log.info("case reviewed")
    raise web.HTTPSeeOther("/review/?sent=1")


@routes.get("/static/review.css")
async def stylesheet(request: web.Request) -> web.Response:
    """The review UI's stylesheet (public: the login page needs it)."""
    return web.Response(
        text=request.app[TEMPLATES].stylesheet,
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )
