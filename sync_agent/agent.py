"""The clinic's sync agent: sends sealed cases to the hub and brings reviews back.

Loop: probe the hub -> send every due case (oldest first) -> pull new reviews -> sleep.
Offline or failing, it backs off exponentially with jitter up to a cap, and never gives up;
when the network returns it resumes by itself. Sending is idempotent: an envelope is sealed
once and the same bytes are re-sent until the hub's acknowledgement names their digest, and
the hub stores an envelope (or a case) once however often it arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sync_agent.envelope import envelope_digest, open_envelope, seal
from sync_agent.errors import EnvelopeError
from sync_agent.keys import PartyKeys, PublicIdentity
from sync_agent.outbox import Outbox, OutboxEntry
from sync_agent.settings import SyncSettings
from sync_agent.signing import sign_request

__all__ = ["SyncAgent", "SyncReport", "SyncSettings", "backoff_delay"]

log = logging.getLogger("skinspector.sync")
REVIEW_CURSOR = "review_cursor"

PayloadFor = Callable[[str], bytes | None]
OnReview = Callable[[str, dict[str, Any]], None]


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(cap, base * 2**failures)."""
    ceiling = min(cap, base * (2 ** min(failures, 30)))
    return rng.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class SyncReport:
    online: bool = False
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    reviews: int = 0
    reviews_set_aside: int = 0
    error: str | None = None


def _review_cursor(item: object, after: int) -> int | None:
    """The item's cursor when it is an integer past ``after`` (else None)."""
    if not isinstance(item, dict):
        return None
    cursor = item.get("cursor")
    if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor <= after:
        return None
    return cursor


class SyncAgent:
    def __init__(
        self,
        outbox: Outbox,
        keys: PartyKeys,
        hub: PublicIdentity,
        settings: SyncSettings,
        payload_for: PayloadFor,
        on_review: OnReview,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not settings.hub_url:
            raise ValueError("the sync agent needs a hub URL")
        self.outbox = outbox
        self.keys = keys
        self.hub = hub
        self.settings = settings
        self.base_url = settings.hub_url.rstrip("/")
        self._payload_for = payload_for
        self._on_review = on_review
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.failures = 0  # consecutive rounds that could not reach the hub
        self.last_report = SyncReport()
        self.next_round_at = 0.0

    # ------------------------------------------------------------------ one round

    async def _probe(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(f"{self.base_url}/healthz") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _envelope(self, entry: OutboxEntry) -> bytes | None:
        if entry.envelope_digest is not None:
            path = self.outbox.envelope_path(entry.case_id)
            if path.is_file():
                stored: bytes = await asyncio.to_thread(path.read_bytes)
                return stored
        payload = await asyncio.to_thread(self._payload_for, entry.case_id)
        if payload is None:
            return None
        envelope_id = uuid.uuid4().hex
        data = await asyncio.to_thread(
            lambda: seal(
                payload,
                kind="case",
                sender=self.keys,
                recipient=self.hub,
                envelope_id=envelope_id,
                created_at=self._clock(),
            )
        )
        await asyncio.to_thread(
            self.outbox.attach_envelope, entry.case_id, envelope_id, envelope_digest(data), data
        )
        return data

    async def _send(
        self, session: aiohttp.ClientSession, entry: OutboxEntry, report: SyncReport
    ) -> bool:
        """Send one case. Returns False when the hub looks unreachable (stop the round)."""
        data = await self._envelope(entry)
        if data is None:
            retry = self._clock() + self.settings.not_ready_retry_seconds
            await asyncio.to_thread(self.outbox.defer, entry.case_id, retry)
            report.deferred += 1
            return True
        digest = envelope_digest(data)
        retry_at = self._clock() + backoff_delay(
            entry.attempts,
            self.settings.backoff_base_seconds,
            self.settings.backoff_cap_seconds,
            self._rng,
        )
        try:
            path = "/api/v1/envelopes"
            headers = sign_request(self.keys, "POST", path, self._clock())
            headers["Content-Type"] = "application/octet-stream"
            async with session.post(self.base_url + path, data=data, headers=headers) as r:
                body = await r.json(content_type=None) if r.content_length != 0 else {}
                status = r.status
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            await asyncio.to_thread(
                self.outbox.mark_failed, entry.case_id, f"network: {type(exc).__name__}", retry_at
            )
            report.failed += 1
            return False
        if status == 200 and isinstance(body, dict) and body.get("ack") == digest:
            await asyncio.to_thread(self.outbox.mark_sent, entry.case_id, digest)
            report.sent += 1
            return True
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        await asyncio.to_thread(
            self.outbox.mark_failed,
            entry.case_id,
            f"hub answered {status} {code or ''}".strip(),
            retry_at,
        )
        report.failed += 1
        return status < 500

    async def _pull_reviews(self, session: aiohttp.ClientSession, report: SyncReport) -> None:
        while True:
            cursor = await asyncio.to_thread(self.outbox.get_meta, REVIEW_CURSOR) or "0"
            path = f"/api/v1/reviews?after={cursor}"
            headers = sign_request(self.keys, "GET", path, self._clock())
            async with session.get(self.base_url + path, headers=headers) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info,
                        (),
                        status=response.status,
                        message="review fetch refused",
                    )
                try:
                    body = await response.json()
                except ValueError as exc:
                    raise aiohttp.ClientPayloadError("the hub's review page is not JSON") from exc
            reviews = body.get("reviews", []) if isinstance(body, dict) else None
            if not isinstance(reviews, list):
                raise aiohttp.ClientPayloadError("the hub's review page is malformed")
            for item in reviews:
                position = _review_cursor(item, int(cursor))
                if position is None:
                    raise aiohttp.ClientPayloadError("a review without a usable cursor")
                problem = await asyncio.to_thread(self._accept_review, item)
                if problem is None:
                    report.reviews += 1
                    await asyncio.to_thread(self.outbox.set_meta, REVIEW_CURSOR, str(position))
                else:
                    log.error("set aside a review from the hub: %s", problem)
                    report.reviews_set_aside += 1
                    await asyncio.to_thread(
                        self.outbox.set_aside_review, position, problem, REVIEW_CURSOR
                    )
            if not reviews:
                return

    def _accept_review(self, item: dict[str, Any]) -> str | None:
        """Open, check and hand over one review. Returns None when accepted, else what is
        wrong with it (the review is then set aside, never retried forever)."""
        import base64
        import binascii

        try:
            data = base64.b64decode(str(item["envelope_b64"]), validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            return "no readable envelope"
        try:
            opened = open_envelope(
                data,
                recipient=self.keys,
                sender_lookup=lambda sender: self.hub if sender == self.hub.party_id else None,
            )
        except EnvelopeError as exc:
            return f"envelope refused: {type(exc).__name__}"
        if opened.kind != "review":
            return f"envelope of kind {opened.kind!r}, not 'review'"
        try:
            review = json.loads(opened.payload)
        except (ValueError, RecursionError):
            return "payload is not JSON"
        if not isinstance(review, dict) or not isinstance(review.get("case_id"), str):
            return "payload has no case_id"
        case_id = review["case_id"]
        try:
            self._on_review(case_id, review)
        except (KeyError, TypeError, ValueError) as exc:  # the review's content is unusable
            return f"review not accepted: {type(exc).__name__}"
        self.outbox.mark_reviewed(case_id)
        return None

    async def sync_once(self) -> SyncReport:
        report = SyncReport()
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_seconds)
        # A fresh connection per request: links through tethered phones drop idle
        # keep-alive connections, and one request's failure never poisons the next.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            report.online = await self._probe(session)
            if not report.online:
                report.error = "hub unreachable"
                return report
            reachable = True
            while reachable:  # every send moves its case out of "due" (sent or later)
                due = await asyncio.to_thread(self.outbox.due, self.settings.batch)
                if not due:
                    break
                for entry in due:
                    reachable = await self._send(session, entry, report)
                    if not reachable:
                        report.error = "hub unreachable while sending"
                        return report
            try:
                await self._pull_reviews(session, report)
            except (aiohttp.ClientError, TimeoutError) as exc:
                report.error = f"review fetch: {type(exc).__name__}"
        return report

    # ------------------------------------------------------------------ forever

    def _pause(self, report: SyncReport) -> float:
        """Idle interval after a good round; growing backoff while the hub is unreachable
        (single cases the hub refused have their own retry times in the outbox)."""
        if report.online and report.error is None:
            self.failures = 0
            return self.settings.interval_seconds
        self.failures += 1
        return backoff_delay(
            self.failures,
            self.settings.backoff_base_seconds,
            self.settings.backoff_cap_seconds,
            self._rng,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until ``stop`` is set; ``wake()`` starts the next round early."""
        self._wake = asyncio.Event()
        while not stop.is_set():
            try:
                report = await self.sync_once()
            except Exception as exc:  # a bug or an unexpected reply: log and keep going
                log.error("sync round failed: %s", type(exc).__name__)
                report = SyncReport(error=type(exc).__name__)
            self.last_report = report
            pause = self._pause(report)
            self.next_round_at = self._clock() + pause
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()

    def wake(self) -> None:
        """Ask for a round now (a new case was stored)."""
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()
