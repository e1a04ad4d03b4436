"""The hub's attack catalogue: one named test per attack, each asserting the status, the
error code, and that the hub stored nothing new."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_agent.envelope import envelope_digest, seal
from sync_agent.keys import PartyKeys, generate_keys
from sync_agent.signing import sign_request
from tests.review_hub.hub_harness import (
    PASSWORD,
    REVIEWER,
    LiveHub,
    case_document,
    csrf_token,
    logged_in,
    photo_jpeg,
    queue_keys,
    running_hub,
    seal_case,
)

SMALL_CAP = 64 * 1024


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(tmp_path / "hub", max_envelope_bytes=SMALL_CAP) as live:
        live.add_reviewer()
        yield live


@pytest.fixture
def clinic(hub: LiveHub) -> PartyKeys:
    return hub.enrol("Clinic A")


@pytest.fixture
def stored_case(hub: LiveHub, clinic: PartyKeys) -> dict[str, object]:
    """One case already at the hub (so 'nothing new' is measured against a non-empty hub)."""
    document = case_document(photos=[photo_jpeg(7)])
    assert hub.send_case(clinic, document).status_code == 200
    return document


def _error(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    code: str = body["error"]["code"]
    assert body["error"]["message"]
    return code


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


def _ciphertext_offset(envelope: bytes) -> int:
    id_len = envelope[7]
    return 56 + id_len + 200  # inside the HPKE ciphertext (after the 56+N-byte header)


# --------------------------------------------------------------------------- envelopes


def test_tampered_ciphertext_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    envelope = seal_case(case_document(), clinic, hub.identity())
    response = hub.post_envelope(_flip(envelope, _ciphertext_offset(envelope)))
    assert response.status_code == 400
    assert _error(response) == "bad_signature"
    assert hub.counts() == before


def test_tampered_ciphertext_resigned_by_the_sender_does_not_decrypt(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    envelope = seal_case(case_document(), clinic, hub.identity())
    body = _flip(envelope, _ciphertext_offset(envelope))[:-64]
    forged = body + clinic.signing_key.sign(body)
    response = hub.post_envelope(forged)
    assert response.status_code == 400
    assert _error(response) == "decryption_failed"
    assert hub.counts() == before


def test_tampered_signature_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    envelope = seal_case(case_document(), clinic, hub.identity())
    response = hub.post_envelope(_flip(envelope, len(envelope) - 1))
    assert response.status_code == 400
    assert _error(response) == "bad_signature"
    assert hub.counts() == before


def test_envelope_from_unenrolled_clinic_is_refused(hub: LiveHub, stored_case: object) -> None:
    before = hub.counts()
    stranger = generate_keys()  # knows the hub's public identity, but was never enrolled
    response = hub.send_case(stranger, case_document())
    assert response.status_code == 403
    assert _error(response) == "unknown_clinic"
    assert hub.counts() == before


def test_envelope_from_revoked_clinic_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    with hub.store() as store:
        assert store.revoke_clinic(clinic.party_id)
    before = hub.counts()
    response = hub.send_case(clinic, case_document())
    assert response.status_code == 403
    assert _error(response) == "unknown_clinic"
    assert "revoked" in response.json()["error"]["message"]
    assert hub.counts() == before


def test_envelope_signed_by_another_clinic_key_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    """Clinic B (enrolled) swaps A's signature for its own: A's key must still verify."""
    other = hub.enrol("Clinic B")
    before = hub.counts()
    envelope = seal_case(case_document(), clinic, hub.identity())
    forged = envelope[:-64] + other.signing_key.sign(envelope[:-64])
    response = hub.post_envelope(forged)
    assert response.status_code == 400
    assert _error(response) == "bad_signature"
    assert hub.counts() == before


def test_replayed_envelope_gets_the_same_ack_and_stores_nothing(
    hub: LiveHub, clinic: PartyKeys
) -> None:
    envelope = seal_case(case_document(), clinic, hub.identity())
    first = hub.post_envelope(envelope)
    assert first.status_code == 200
    before = hub.counts()
    for _ in range(3):  # a retry after a lost ack, then replays
        again = hub.post_envelope(envelope)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.json()["ack"] == envelope_digest(envelope)
    assert hub.counts() == before
    assert before["cases"] == 1
    assert before["receipts"] == 1


def test_replay_of_a_superseded_envelope_changes_nothing(hub: LiveHub, clinic: PartyKeys) -> None:
    document = case_document(action="self-care")
    old = seal_case(document, clinic, hub.identity(), created_at=1000.0)
    assert hub.post_envelope(old).status_code == 200
    document["result"]["assessment"]["action"] = "urgent referral"
    assert hub.send_case(clinic, document, created_at=2000.0).status_code == 200
    before = hub.counts()
    replay = hub.post_envelope(old)
    assert replay.status_code == 200
    assert replay.json()["ack"] == envelope_digest(old)
    assert hub.counts() == before
    assert hub.db_rows("SELECT urgency_rank FROM cases") == [(2,)]


def test_oversized_envelope_declared_length_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    big = case_document(notes="lesion " * SMALL_CAP)  # a valid case, just too large
    envelope = seal_case(big, clinic, hub.identity())
    assert len(envelope) > SMALL_CAP
    response = hub.post_envelope(envelope)
    assert response.status_code == 413
    assert _error(response) == "envelope_too_large"
    assert hub.counts() == before


def test_oversized_envelope_is_refused_while_streaming(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    """A chunked body with no declared length from an enrolled sender: the hub answers 413
    once the cap is passed, while the client has sent only a little more than the cap of a
    much longer stream."""
    before = hub.counts()
    prefix = seal_case(case_document(), clinic, hub.identity())[:24]
    with socket.create_connection(("127.0.0.1", hub.port), timeout=20) as sock:
        sock.sendall(
            b"POST /api/v1/envelopes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = prefix + b"\x00" * (16 * 1024 - 24)
        for _ in range(SMALL_CAP // len(chunk) + 2):  # cap + 16 KiB, and no final chunk
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        received = b""
        while b"\r\n\r\n" not in received or b"}}" not in received:
            part = sock.recv(65536)
            if not part:
                break
            received += part
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'"envelope_too_large"' in body
    assert hub.counts() == before


def test_envelope_of_kind_review_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    envelope = seal_case(case_document(), clinic, hub.identity(), kind="review")
    response = hub.post_envelope(envelope)
    assert response.status_code == 400
    assert _error(response) == "wrong_kind"
    assert hub.counts() == before


def test_envelope_for_another_recipient_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    elsewhere = generate_keys().public()
    response = hub.post_envelope(seal_case(case_document(), clinic, elsewhere))
    assert response.status_code == 400
    assert _error(response) == "wrong_recipient"
    assert hub.counts() == before


def test_garbage_and_wrong_media_type_are_refused(hub: LiveHub, stored_case: object) -> None:
    before = hub.counts()
    garbage = hub.post_envelope(b"not an envelope at all")
    assert garbage.status_code == 400
    assert _error(garbage) == "malformed_envelope"
    as_json = hub.post_envelope(b"{}", headers={"Content-Type": "application/json"})
    assert as_json.status_code == 415
    assert _error(as_json) == "unsupported_media_type"
    assert hub.counts() == before


def test_invalid_case_payload_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    before = hub.counts()
    document = case_document()
    document["photos"][0]["sha256"] = "0" * 64  # does not match the JPEG
    response = hub.send_case(clinic, document)
    assert response.status_code == 422
    assert _error(response) == "invalid_case"
    not_json = seal(
        b"\xff not json",
        kind="case",
        sender=clinic,
        recipient=hub.identity(),
        envelope_id=uuid.uuid4().hex,
        created_at=time.time(),
    )
    response = hub.post_envelope(not_json)
    assert response.status_code == 422
    assert _error(response) == "invalid_case"
    assert hub.counts() == before


def test_envelope_id_reused_for_another_case_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    ((envelope_id,),) = hub.db_rows("SELECT envelope_id FROM cases")
    before = hub.counts()
    response = hub.send_case(clinic, case_document(), envelope_id=envelope_id)
    assert response.status_code == 409
    assert _error(response) == "envelope_id_reused"
    assert hub.counts() == before


# --------------------------------------------------------------------------- review fetch


def _review_first_case(hub: LiveHub) -> None:
    with logged_in(hub) as browser:
        (key,) = queue_keys(browser)
        page = browser.get(f"/review/cases/{key}").text
        response = browser.post(
            f"/review/cases/{key}/review",
            data={"csrf": csrf_token(page), "diagnosis": "Naevus", "urgency": "self-care"},
        )
        assert response.status_code == 303


def test_review_fetch_never_returns_another_clinics_reviews(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    other = hub.enrol("Clinic B")
    _review_first_case(hub)
    assert len(hub.fetch_reviews(clinic).json()["reviews"]) == 1  # A gets its own
    answer = hub.fetch_reviews(other)
    assert answer.status_code == 200
    assert answer.json() == {"reviews": [], "next_cursor": 0}
    # B claiming to be A, signing with its own key: refused.
    path = "/api/v1/reviews?after=0"
    headers = sign_request(other, "GET", path, time.time())
    headers["X-Clinic-Id"] = clinic.party_id
    import httpx

    impersonation = httpx.get(hub.url + path, headers=headers)
    assert impersonation.status_code == 401
    assert _error(impersonation) == "bad_signature"


def test_review_fetch_with_bad_signature_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    _review_first_case(hub)
    import httpx

    path = "/api/v1/reviews?after=0"
    headers = sign_request(clinic, "GET", path, time.time())
    # Signed for another query (cursor), sent for this one.
    other = sign_request(clinic, "GET", "/api/v1/reviews?after=5", time.time())
    headers["X-Signature"] = other["X-Signature"]
    response = httpx.get(hub.url + path, headers=headers)
    assert response.status_code == 401
    assert _error(response) == "bad_signature"
    garbage = hub.fetch_reviews(clinic, headers={"X-Signature": "not base64!"})
    assert garbage.status_code == 401
    assert _error(garbage) == "bad_signature"
    missing = httpx.get(hub.url + path)
    assert missing.status_code == 401
    assert _error(missing) == "unauthorized"


def test_review_fetch_outside_the_clock_window_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    day = 86_400
    assert hub.fetch_reviews(clinic, timestamp=time.time() - 29 * day).status_code == 200
    assert hub.fetch_reviews(clinic, timestamp=time.time() + 29 * day).status_code == 200
    stale = hub.fetch_reviews(clinic, timestamp=time.time() - 31 * day)
    assert stale.status_code == 401
    assert _error(stale) == "stale_request"


def test_review_fetch_by_unknown_or_revoked_clinic_is_refused(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    _review_first_case(hub)
    unknown = hub.fetch_reviews(generate_keys())
    assert unknown.status_code == 403
    assert _error(unknown) == "unknown_clinic"
    with hub.store() as store:
        store.revoke_clinic(clinic.party_id)
    revoked = hub.fetch_reviews(clinic)
    assert revoked.status_code == 403
    assert _error(revoked) == "unknown_clinic"


# --------------------------------------------------------------------------- reviewer UI


def test_reviewer_pages_without_login_redirect_and_photos_are_401(
    hub: LiveHub, stored_case: object
) -> None:
    ((key,),) = hub.db_rows("SELECT key FROM cases")
    with hub.browser() as anonymous:
        for path in ("/review/", f"/review/cases/{key}", "/review"):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] in ("/review/login", "/review/"), path
        assert anonymous.get("/review/").headers["location"] == "/review/login"
        photo = anonymous.get(f"/review/cases/{key}/photos/0")
        assert photo.status_code == 401
        assert photo.headers["content-type"].startswith("text/plain")
        posted = anonymous.post(
            f"/review/cases/{key}/review",
            data={"csrf": "x", "diagnosis": "Naevus", "urgency": "self-care"},
        )
        assert posted.status_code == 303
        assert posted.headers["location"] == "/review/login"
        forged_cookie = anonymous.get(
            "/review/", headers={"Cookie": "skinspector_review=made-up-token"}
        )
        assert forged_cookie.status_code == 303
    assert hub.counts()["reviews"] == 0


@pytest.mark.parametrize("csrf", [None, "wrong-token", ""])
def test_review_post_without_valid_csrf_token_is_refused(
    hub: LiveHub, stored_case: object, csrf: str | None
) -> None:
    with logged_in(hub) as browser:
        (key,) = queue_keys(browser)
        data = {"diagnosis": "Naevus", "urgency": "self-care"}
        if csrf is not None:
            data["csrf"] = csrf
        response = browser.post(f"/review/cases/{key}/review", data=data)
        assert response.status_code == 403
        assert queue_keys(browser) == [key]
    assert hub.counts()["reviews"] == 0


def test_review_post_with_another_sessions_csrf_token_is_refused(
    hub: LiveHub, stored_case: object
) -> None:
    with logged_in(hub) as first, logged_in(hub) as second:
        (key,) = queue_keys(first)
        token_of_first = csrf_token(first.get(f"/review/cases/{key}").text)
        response = second.post(
            f"/review/cases/{key}/review",
            data={"csrf": token_of_first, "diagnosis": "Naevus", "urgency": "self-care"},
        )
        assert response.status_code == 403
    assert hub.counts()["reviews"] == 0


def test_cross_site_post_is_refused(hub: LiveHub, stored_case: object) -> None:
    with logged_in(hub) as browser:
        (key,) = queue_keys(browser)
        token = csrf_token(browser.get(f"/review/cases/{key}").text)
        response = browser.post(
            f"/review/cases/{key}/review",
            data={"csrf": token, "diagnosis": "Naevus", "urgency": "self-care"},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status_code == 403
    assert hub.counts()["reviews"] == 0


def test_wrong_password_is_refused(hub: LiveHub) -> None:
    with hub.browser() as browser:
        response = hub.login(browser, password="not the password at all")
        assert response.status_code == 401
        assert "Wrong username or password." in response.text
        assert "set-cookie" not in response.headers
        unknown = hub.login(browser, username="nobody", password=PASSWORD)
        assert unknown.status_code == 401
        assert "Wrong username or password." in unknown.text
        assert browser.get("/review/").status_code == 303
    assert hub.db_rows("SELECT COUNT(*) FROM sessions") == [(0,)]


def test_login_rate_limit_per_username(hub: LiveHub) -> None:
    limit = hub.settings.max_login_failures_per_user
    with hub.browser() as browser:
        for _ in range(limit):
            assert hub.login(browser, password="wrong password guess").status_code == 401
        blocked = hub.login(browser)  # even the right password, while the limit holds
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in blocked.text
        assert "set-cookie" not in blocked.headers
    assert hub.db_rows("SELECT COUNT(*) FROM sessions") == [(0,)]


def test_login_rate_limit_per_client_address(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub", max_login_failures_per_ip=3) as live:
        live.add_reviewer()
        with live.browser() as browser:
            for n in range(3):  # different usernames, same address
                assert live.login(browser, username=f"guess{n}").status_code == 401
            blocked = live.login(browser, username=REVIEWER)
            assert blocked.status_code == 429
            assert "retry-after" in blocked.headers


def test_revoked_clinics_case_stays_but_reviews_are_not_served(
    hub: LiveHub, clinic: PartyKeys, stored_case: object
) -> None:
    with hub.store() as store:
        store.revoke_clinic(clinic.party_id)
    with logged_in(hub) as browser:
        (key,) = queue_keys(browser)
        page = browser.get(f"/review/cases/{key}").text
        assert "enrolment has been revoked" in page
    assert json.loads(hub.db_rows("SELECT payload FROM cases")[0][0])["case_id"]
