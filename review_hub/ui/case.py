"""One case: its page (photos, the clinic's notes, the AI assessment and cited references,
the review form or the review), its photos, and the review submission, which seals the
review for the clinic and takes the case out of the queue."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from aiohttp import web
from pydantic import ValidationError

from review_hub.payloads import URGENCIES, ReviewFields, build_review_payload
from review_hub.state import HUB_KEYS, SESSION, STORE
from review_hub.store import AlreadyReviewed, CaseDetail
from review_hub.ui import documents
from review_hub.ui.pages import Refused, refusals, render_page
from review_hub.ui.sessions import checked_form
from sync_agent.envelope import seal

__all__ = ["ReviewForm", "case_page", "photo", "routes", "submit_review"]

log = logging.getLogger("skinspector.hub")
routes = web.RouteTableDef()

_CASE = "/review/cases/{key:[0-9a-f]{32}}"
_FORM_FIELDS = ("diagnosis", "management", "urgency", "message")


@dataclass(frozen=True, slots=True)
class ReviewForm:
    """The review form's values (empty at first, the posted ones after an error).

    There is no default urgency from the AI's action: the reviewer chooses it explicitly.
    """

    diagnosis: str = ""
    management: str = ""
    urgency: str = ""
    message: str = ""
    error: str = ""


def _render_case(
    request: web.Request,
    case: CaseDetail,
    *,
    status: int = 200,
    form: ReviewForm | None = None,
) -> web.Response:
    document = case.document
    raw_status = document.get("status")
    context = {
        "case": case,
        "ai": documents.ai_result(document),
        "ai_status": str(raw_status) if raw_status else "",
        "facts": documents.context_facts(document),
        "references": documents.cited_references(document),
        "form": form or ReviewForm(),
        "urgencies": URGENCIES,
    }
    return render_page(request, "case.html", context, status=status)


async def _case_or_404(request: web.Request) -> CaseDetail:
    key = request.match_info["key"]
    case = await asyncio.to_thread(request.app[STORE].get_case, key)
    if case is None:
        raise Refused(404, "Not found", "There is no such case.")
    return case


@routes.get(_CASE)
@refusals
async def case_page(request: web.Request) -> web.Response:
    """One case: photos, the clinic's notes, the AI assessment and references, the form."""
    return _render_case(request, await _case_or_404(request))


@routes.get(_CASE + "/photos/{index:[0-9]{1,4}}")
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


def _already_reviewed() -> Refused:
    return Refused(409, "Already reviewed", "Another review of this case was saved first.")


@routes.post(_CASE + "/review")
@refusals
async def submit_review(request: web.Request) -> web.Response:
    """Store the review, seal it for the clinic, take the case out of the queue."""
    form = await checked_form(request)
    case = await _case_or_404(request)
    if case.review is not None:
        raise _already_reviewed()
    values = {name: value for name in _FORM_FIELDS if isinstance(value := form.get(name, ""), str)}
    try:
        fields = ReviewFields.model_validate(values)
    except ValidationError as exc:
        names = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        posted = ReviewForm(**values, error=f"Please check: {', '.join(names)}.")
        return _render_case(request, case, status=400, form=posted)
    session = request[SESSION]
    store, keys = request.app[STORE], request.app[HUB_KEYS]
    clinic = await asyncio.to_thread(store.get_clinic, case.clinic_id)
    if clinic is None:  # pragma: no cover - cases reference clinics
        raise Refused(500, "Error", "The clinic of this case is missing.")
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
        raise _already_reviewed() from None
    log.info("case reviewed")
    raise web.HTTPSeeOther("/review/?sent=1")
