"""The review hub end to end over HTTP: clinic sends, dermatologist reviews, clinic fetches."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sync_agent.envelope import envelope_digest, open_envelope
from sync_agent.keys import PartyKeys, PublicIdentity
from tests.review_hub.hub_harness import (
    REVIEWER_NAME,
    LiveHub,
    case_document,
    csrf_token,
    logged_in,
    photo_jpeg,
    queue_keys,
    running_hub,
    seal_case,
)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(tmp_path / "hub") as live:
        live.add_reviewer()
        yield live


def _open_review(
    clinic: PartyKeys, hub_identity: PublicIdentity, item: dict[str, object]
) -> dict[str, object]:
    opened = open_envelope(
        base64.b64decode(str(item["envelope_b64"])),
        recipient=clinic,
        sender_lookup=lambda party: hub_identity if party == hub_identity.party_id else None,
    )
    assert opened.kind == "review"
    assert opened.sender_id == hub_identity.party_id
    review: dict[str, object] = json.loads(opened.payload)
    return review


def test_happy_path_case_to_review_and_back(hub: LiveHub) -> None:
    clinic = hub.enrol("Puskesmas Sumba")
    photos = [photo_jpeg(1), photo_jpeg(2)]
    document = case_document(action="urgent referral", photos=photos)
    envelope = seal_case(document, clinic, hub.identity())

    response = hub.post_envelope(envelope)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ack"] == envelope_digest(envelope)
    assert body["case_id"] == document["case_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["envelope_id"])

    with logged_in(hub) as browser:
        keys = queue_keys(browser)
        assert len(keys) == 1
        page = browser.get(f"/review/cases/{keys[0]}")
        assert page.status_code == 200
        html = page.text
        # The clinic's notes, the AI assessment, the cited reference (expandable) only.
        assert "Puskesmas Sumba" in html
        assert "Itchy for three weeks, growing." in html
        assert "left forearm" in html
        assert "irregular border" in html
        assert "seborrhoeic keratosis" in html
        assert "urgent referral" in html
        assert "Decision support only; not a diagnosis." in html
        assert "<details><summary>[1] Pigmented lesions" in html
        assert "Asymmetry, Border, Colour, Diameter, Evolution." in html
        assert "Uncited chapter" not in html
        # Photos load, byte for byte, as JPEG.
        urls = re.findall(r'<img src="(/review/cases/[0-9a-f]{32}/photos/\d+)"', html)
        assert len(urls) == 2
        for url, jpeg in zip(urls, photos, strict=True):
            got = browser.get(url)
            assert got.status_code == 200
            assert got.headers["content-type"] == "image/jpeg"
            assert got.content == jpeg

        submitted = browser.post(
            f"/review/cases/{keys[0]}/review",
            data={
                "csrf": csrf_token(html),
                "diagnosis": "Seborrhoeic keratosis",
                "management": "Reassure; cryotherapy if irritated.",
                "urgency": "routine referral",
                "message": "Benign-looking; no urgent action needed.",
            },
        )
        assert submitted.status_code == 303, submitted.text
        assert submitted.headers["location"] == "/review/?sent=1"
        assert queue_keys(browser) == []  # the case left the queue
        done = browser.get(f"/review/cases/{keys[0]}")
        assert "Seborrhoeic keratosis" in done.text
        assert 'name="diagnosis"' not in done.text  # no second form

    fetched = hub.fetch_reviews(clinic)
    assert fetched.status_code == 200, fetched.text
    answer = fetched.json()
    assert len(answer["reviews"]) == 1
    item = answer["reviews"][0]
    assert item["case_id"] == document["case_id"]
    assert answer["next_cursor"] == item["cursor"]
    review = _open_review(clinic, hub.identity(), item)
    assert review["format"] == 1
    assert review["case_id"] == document["case_id"]
    assert review["reviewer"] == REVIEWER_NAME
    assert review["diagnosis"] == "Seborrhoeic keratosis"
    assert review["management"] == "Reassure; cryotherapy if irritated."
    assert review["urgency"] == "routine referral"
    assert review["message"] == "Benign-looking; no urgent action needed."
    assert abs(float(str(review["reviewed_at"])) - time.time()) < 120
    # The cursor moves on: nothing more after it.
    again = hub.fetch_reviews(clinic, after=answer["next_cursor"]).json()
    assert again == {"reviews": [], "next_cursor": answer["next_cursor"]}


def test_queue_is_most_urgent_first_then_oldest_first(hub: LiveHub) -> None:
    clinic = hub.enrol()
    sent = []
    for action in (
        "self-care",
        "routine referral",
        "urgent referral",
        None,
        "self-care",
        "urgent referral",
    ):
        document = case_document(action=action, photos=[photo_jpeg(3)])
        assert hub.send_case(clinic, document).status_code == 200
        sent.append((action, document["case_id"]))
        time.sleep(0.01)  # distinct received_at
    rows = hub.db_rows("SELECT key, case_id FROM cases")
    key_of = {case_id: key for key, case_id in rows}
    expected_actions = [
        "urgent referral",
        "urgent referral",
        "routine referral",
        None,  # no AI result: ranked like a routine referral (received later)
        "self-care",
        "self-care",
    ]
    by_action: dict[str | None, list[str]] = {}
    for action, case_id in sent:
        by_action.setdefault(action, []).append(key_of[case_id])
    expected: list[str] = []
    for action in dict.fromkeys(expected_actions):
        expected += by_action[action]
    with logged_in(hub) as browser:
        assert queue_keys(browser) == expected


def test_resend_with_newer_result_updates_the_case(hub: LiveHub) -> None:
    clinic = hub.enrol()
    first = case_document(action=None, photos=[photo_jpeg(4)])
    assert hub.send_case(clinic, first, created_at=1000.0).status_code == 200
    newer = dict(case_document(action="urgent referral", photos=[photo_jpeg(5)]))
    newer["case_id"] = first["case_id"]
    response = hub.send_case(clinic, newer, created_at=2000.0)
    assert response.status_code == 200
    assert hub.counts()["cases"] == 1
    ((rank, payload),) = hub.db_rows("SELECT urgency_rank, payload FROM cases")
    assert rank == 2
    assert json.loads(payload)["result"]["assessment"]["action"] == "urgent referral"
    # A delayed older envelope is acknowledged but does not overwrite the newer one.
    older = case_document(action="self-care", photos=[photo_jpeg(6)])
    older["case_id"] = first["case_id"]
    envelope = seal_case(older, clinic, hub.identity(), created_at=1500.0)
    late = hub.post_envelope(envelope)
    assert late.status_code == 200
    assert late.json()["ack"] == envelope_digest(envelope)
    ((rank, payload),) = hub.db_rows("SELECT urgency_rank, payload FROM cases")
    assert rank == 2
    assert hub.counts()["cases"] == 1
    assert hub.counts()["photos"] == 1


def test_identity_health_and_security_headers(hub: LiveHub) -> None:
    identity = hub.identity()
    stored = PartyKeys.load(hub.settings.keys_file)
    assert identity == stored.public()
    health = httpx.get(f"{hub.url}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    login = httpx.get(f"{hub.url}/review/login")
    assert login.status_code == 200
    csp = login.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'none'" in csp
    assert login.headers["x-content-type-options"] == "nosniff"
    assert login.headers["x-frame-options"] == "DENY"
    assert "<script" not in login.text
    assert " style=" not in login.text
    css = httpx.get(f"{hub.url}/static/review.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_files_are_private(hub: LiveHub) -> None:
    for path in (hub.settings.database, hub.settings.keys_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_payload_text_is_escaped(hub: LiveHub) -> None:
    clinic = hub.enrol('<img src=x onerror="alert(1)">Evil clinic')
    document = case_document(notes="<script>alert('notes')</script> & more")
    document["result"]["assessment"]["findings"] = ['<b onmouseover="x()">bold</b>']
    document["result"]["references"][0]["text"] = "</details><script>alert(2)</script>"
    assert hub.send_case(clinic, document).status_code == 200
    with logged_in(hub) as browser:
        queue = browser.get("/review/").text
        assert "<img src=x" not in queue
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;Evil clinic" in queue
        (key,) = queue_keys(browser)
        page = browser.get(f"/review/cases/{key}").text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;notes&#x27;)&lt;/script&gt; &amp; more" in page
    assert "<b onmouseover" not in page
    assert "&lt;/details&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_review_form_validation_keeps_the_case_queued(hub: LiveHub) -> None:
    clinic = hub.enrol()
    assert hub.send_case(clinic, case_document()).status_code == 200
    with logged_in(hub) as browser:
        (key,) = queue_keys(browser)
        page = browser.get(f"/review/cases/{key}").text
        bad = browser.post(
            f"/review/cases/{key}/review",
            data={"csrf": csrf_token(page), "diagnosis": "  ", "urgency": "whenever"},
        )
        assert bad.status_code == 400
        assert "Please check: diagnosis, urgency." in bad.text
        assert queue_keys(browser) == [key]
    assert hub.counts()["reviews"] == 0


def test_logout_ends_the_session(hub: LiveHub) -> None:
    with logged_in(hub) as browser:
        page = browser.get("/review/").text
        out = browser.post("/review/logout", data={"csrf": csrf_token(page)})
        assert out.status_code == 303
        assert out.headers["location"] == "/review/login"
        assert hub.db_rows("SELECT COUNT(*) FROM sessions") == [(0,)]
        after = browser.get("/review/")
        assert after.status_code == 303
        assert after.headers["location"] == "/review/login"


def test_session_cookie_attributes_and_hashed_token(hub: LiveHub) -> None:
    with hub.browser() as browser:
        response = hub.login(browser)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/review" in cookie
        assert "Secure" not in cookie  # plain HTTP in tests; Secure whenever TLS is on
        token = browser.cookies["skinspector_review"]
    ((stored,),) = hub.db_rows("SELECT token_sha256 FROM sessions")
    assert stored != token
    import hashlib

    assert stored == hashlib.sha256(token.encode()).hexdigest()


def test_secure_cookie_when_configured(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub", secure_cookies=True) as live:
        live.add_reviewer()
        with live.browser() as browser:
            response = live.login(browser)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-skinspector_review=")
        assert "Secure" in cookie
        assert "Path=/;" in cookie or cookie.rstrip().endswith("Path=/")
