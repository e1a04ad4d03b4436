"""A real review hub on 127.0.0.1 in a background thread, plus clinic and reviewer helpers.

Used by the ``test_hub_*`` modules (fixtures are declared there, so this module does not
clash with other sync-agent test helpers).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from review_hub.server import RunningHub, start_hub
from review_hub.settings import HubSettings
from review_hub.store import HubStore
from skinspector.core.samples import lesion_photo
from sync_agent.envelope import seal
from sync_agent.keys import PartyKeys, PublicIdentity, generate_keys
from sync_agent.signing import sign_request
from tests.threaded_loop import serve_in_background

REVIEWER = "derm.one"
REVIEWER_NAME = "Dr. Ada Derm"
PASSWORD = "correct horse battery staple"
CASE_KEY = re.compile(r"/review/cases/([0-9a-f]{32})\"")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def photo_jpeg(seed: int = 1, width: int = 64, height: int = 48) -> bytes:
    return lesion_photo(width, height, seed=seed, with_gps=False)


def case_document(
    *,
    case_id: str | None = None,
    action: str | None = "routine referral",
    notes: str = "Itchy for three weeks, growing.",
    photos: list[bytes] | None = None,
    created_at: float | None = None,
    red_flags: list[str] | None = None,
) -> dict[str, Any]:
    """A case payload as a clinic seals it (``action=None``: no AI result)."""
    photos = [photo_jpeg(1), photo_jpeg(2)] if photos is None else photos
    result: dict[str, Any] | None = None
    if action is not None:
        result = {
            "assessment": {
                "findings": ["irregular border", "two colours"],
                "likely_conditions": [
                    {"name": "seborrhoeic keratosis", "likelihood": "moderate"},
                    {"name": "melanoma", "likelihood": "low"},
                ],
                "red_flags": red_flags or [],
                "action": action,
                "action_from_model": True,
                "disclaimer": "Decision support only; not a diagnosis.",
                "raw_text": "...",
                "complete": True,
            },
            "references": [
                {
                    "number": 1,
                    "chunk_id": "c1",
                    "source": "starter/pigmented.md",
                    "title": "Pigmented lesions",
                    "heading": "ABCDE rule",
                    "text": "Asymmetry, Border, Colour, Diameter, Evolution.",
                    "cited": True,
                },
                {
                    "number": 2,
                    "chunk_id": "c2",
                    "source": "starter/other.md",
                    "title": "Uncited chapter",
                    "heading": "Not used",
                    "text": "This reference was retrieved but not cited.",
                    "cited": False,
                },
            ],
            "red_flag_rules": [],
            "audit": {"bundle_version": "test", "demo": False},
        }
    return {
        "format": 1,
        "case_id": case_id or uuid.uuid4().hex,
        "created_at": created_at if created_at is not None else time.time(),
        "context": {
            "age_years": 54,
            "sex": "female",
            "body_site": "left forearm",
            "duration": "3 weeks",
            "symptoms": ["itch"],
            "notes": notes,
            "language": "en",
        },
        "photos": [
            {
                "index": index,
                "sha256": hashlib.sha256(jpeg).hexdigest(),
                "jpeg_b64": base64.b64encode(jpeg).decode("ascii"),
            }
            for index, jpeg in enumerate(photos)
        ],
        "result": result,
        "status": "done" if action is not None else "queued",
    }


def seal_case(
    document: dict[str, Any],
    clinic: PartyKeys,
    hub: PublicIdentity,
    *,
    kind: str = "case",
    envelope_id: str | None = None,
    created_at: float | None = None,
) -> bytes:
    return seal(
        json.dumps(document).encode("utf-8"),
        kind=kind,  # type: ignore[arg-type]
        sender=clinic,
        recipient=hub,
        envelope_id=envelope_id or uuid.uuid4().hex,
        created_at=time.time() if created_at is None else created_at,
    )


@dataclass
class LiveHub:
    url: str
    settings: HubSettings
    running: RunningHub
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    _identity: PublicIdentity | None = field(default=None)

    @property
    def port(self) -> int:
        return self.running.port

    @contextmanager
    def store(self) -> Iterator[HubStore]:
        """A second connection to the hub's database (like the CLI's)."""
        with HubStore(self.settings.database) as store:
            yield store

    def identity(self) -> PublicIdentity:
        if self._identity is None:
            response = httpx.get(f"{self.url}/api/v1/identity")
            assert response.status_code == 200, response.text
            self._identity = PublicIdentity.from_json(response.text)
        return self._identity

    def enrol(self, name: str = "Clinic A") -> PartyKeys:
        keys = generate_keys()
        with self.store() as store:
            store.enrol_clinic(keys.public(), name)
        return keys

    def add_reviewer(
        self, username: str = REVIEWER, password: str = PASSWORD, name: str = REVIEWER_NAME
    ) -> None:
        with self.store() as store:
            store.add_reviewer(username, name, password)

    def counts(self) -> dict[str, int]:
        with self.store() as store:
            return store.counts()

    def db_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.settings.database)
        try:
            return list(db.execute(sql, params).fetchall())
        finally:
            db.close()

    def post_envelope(self, data: bytes, **kwargs: Any) -> httpx.Response:
        headers = {"Content-Type": "application/octet-stream", **kwargs.pop("headers", {})}
        return httpx.post(
            f"{self.url}/api/v1/envelopes", content=data, headers=headers, timeout=60, **kwargs
        )

    def send_case(
        self, clinic: PartyKeys, document: dict[str, Any], **kwargs: Any
    ) -> httpx.Response:
        return self.post_envelope(seal_case(document, clinic, self.identity(), **kwargs))

    def fetch_reviews(
        self,
        clinic: PartyKeys,
        after: int = 0,
        *,
        timestamp: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        path = f"/api/v1/reviews?after={after}"
        signed = sign_request(clinic, "GET", path, time.time() if timestamp is None else timestamp)
        signed.update(headers or {})
        return httpx.get(self.url + path, headers=signed)

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)

    def login(
        self, client: httpx.Client, username: str = REVIEWER, password: str = PASSWORD
    ) -> httpx.Response:
        return client.post("/review/login", data={"username": username, "password": password})


@contextmanager
def logged_in(hub: LiveHub) -> Iterator[httpx.Client]:
    """A browser-like client with a reviewer session."""
    with hub.browser() as client:
        response = hub.login(client)
        assert response.status_code == 303, response.text
        yield client


def queue_keys(client: httpx.Client) -> list[str]:
    response = client.get("/review/")
    assert response.status_code == 200, response.text
    return CASE_KEY.findall(response.text)


def csrf_token(page: str) -> str:
    found = CSRF.findall(page)
    assert found, "no CSRF field on the page"
    return found[-1]


@contextmanager
def running_hub(data_dir: Path, **overrides: Any) -> Iterator[LiveHub]:
    settings = HubSettings(**{"data_dir": data_dir, "host": "127.0.0.1", "port": 0, **overrides})
    with serve_in_background(
        lambda: start_hub(settings), lambda running: running.stop(), what="hub"
    ) as bg:
        yield LiveHub(bg.running.url, settings, bg.running, bg.loop, bg.thread)
