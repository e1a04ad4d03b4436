"""Reviews pulled from a hostile or broken hub: each bad review is set aside (counted in
``sync status``) and the cursor moves past it; the good reviews after it still arrive."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from sync_agent.agent import REVIEW_CURSOR, SyncAgent
from sync_agent.envelope import seal
from sync_agent.keys import PartyKeys, generate_keys
from sync_agent.outbox import Outbox
from sync_agent.settings import SyncSettings


def _sealed(payload: bytes, hub: PartyKeys, clinic: PartyKeys, kind: str = "review") -> str:
    data = seal(
        payload,
        kind=kind,  # type: ignore[arg-type]
        sender=hub,
        recipient=clinic.public(),
        envelope_id=uuid.uuid4().hex,
        created_at=time.time(),
    )
    return base64.b64encode(data).decode("ascii")


def test_bad_reviews_are_set_aside_and_do_not_stall_the_cursor(tmp_path: Path) -> None:
    hub, clinic = generate_keys(), generate_keys()
    good = json.dumps({"case_id": "c" * 32, "diagnosis": "Tinea"}).encode()
    items: list[dict[str, Any]] = [
        {"cursor": 1, "envelope_b64": "!!not base64!!"},
        {"cursor": 2, "envelope_b64": _sealed(good, hub, clinic, kind="case")},  # wrong kind
        {"cursor": 3, "envelope_b64": _sealed(b"not json", hub, clinic)},
        {"cursor": 4, "envelope_b64": _sealed(b'{"no_case": 1}', hub, clinic)},
        {"cursor": 5, "envelope_b64": _sealed(good, generate_keys(), clinic)},  # forged sender
        {"cursor": 6, "envelope_b64": _sealed(good, hub, clinic)},
    ]

    async def reviews(request: web.Request) -> web.Response:
        after = int(request.query["after"])
        page = [item for item in items if item["cursor"] > after][:4]
        return web.json_response({"reviews": page, "next_cursor": after})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    received: list[str] = []
    outbox = Outbox(tmp_path / "cases.sqlite3", tmp_path / "sync" / "outbox")

    async def main() -> Any:
        app = web.Application()
        app.router.add_get("/api/v1/reviews", reviews)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        agent = SyncAgent(
            outbox,
            clinic,
            hub.public(),
            SyncSettings(hub_url=f"http://127.0.0.1:{port}", request_timeout_seconds=5),
            payload_for=lambda case_id: None,
            on_review=lambda case_id, review: received.append(case_id),
        )
        try:
            return await agent.sync_once()
        finally:
            await runner.cleanup()

    try:
        report = asyncio.run(main())
        assert report.error is None
        assert received == ["c" * 32]
        assert report.reviews == 1
        assert report.reviews_set_aside == 5
        assert outbox.get_meta(REVIEW_CURSOR) == "6"  # past every review, bad ones included
        assert outbox.counts()["reviews_set_aside"] == 5
        reasons = [reason for _cursor, reason, _at in outbox.reviews_set_aside()]
        assert any("kind" in reason for reason in reasons)
        assert all("Tinea" not in reason for reason in reasons)  # no content in the record
    finally:
        outbox.close()
