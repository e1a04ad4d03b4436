"""The review queue: unreviewed cases, most urgent AI action first, then oldest first."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from review_hub.payloads import ai_action
from review_hub.state import STORE
from review_hub.store import QueueItem
from review_hub.ui import documents
from review_hub.ui.pages import render_page

__all__ = ["QueueRow", "queue_page", "review_root", "routes"]

routes = web.RouteTableDef()
#: Cases on one page of the queue.
_PAGE = 100


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of the queue."""

    key: str  # the case's URL key
    action: str | None  # the AI's recommended action
    red_flags: int
    received_at: float
    clinic_name: str
    patient: str  # age, sex, body site
    photos: int

    @classmethod
    def of(cls, item: QueueItem) -> QueueRow:
        document = item.document
        photos = document.get("photos")
        return cls(
            key=item.key,
            action=ai_action(document),
            red_flags=documents.red_flag_count(document),
            received_at=item.received_at,
            clinic_name=item.clinic_name,
            patient=documents.patient_summary(document),
            photos=len(photos) if isinstance(photos, list) else 0,
        )


@routes.get("/review")
async def review_root(request: web.Request) -> web.Response:
    """``/review`` -> ``/review/``."""
    raise web.HTTPSeeOther("/review/")


@routes.get("/review/")
async def queue_page(request: web.Request) -> web.Response:
    """Unreviewed cases, most urgent AI action first, then oldest first.

    ``?sent=1`` (where a review submission lands) adds a notice that it was saved;
    ``?page=N`` (from 1) pages through a long queue, ``_PAGE`` cases a page.
    """
    raw = request.query.get("page", "1")
    page = int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 7 else 1
    page = max(1, page)
    items = await asyncio.to_thread(request.app[STORE].queue, _PAGE + 1, (page - 1) * _PAGE)
    context = {
        "rows": [QueueRow.of(item) for item in items[:_PAGE]],
        "sent": request.query.get("sent") == "1",
        "page": page,
        "next_page": f"/review/?page={page + 1}" if len(items) > _PAGE else None,
        "previous_page": f"/review/?page={page - 1}" if page > 1 else None,
    }
    return render_page(request, "queue.html", context)
