"""Denial-of-service attacks on a running hub: slow clients, socket floods, uploads from
unknown senders, too many uploads at once. Raw sockets, real server, small limits."""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skinspector.core.http_api import HttpLimits
from sync_agent.keys import PartyKeys, generate_keys
from tests.review_hub.hub_harness import LiveHub, case_document, running_hub, seal_case

LIMITS = HttpLimits(
    header_timeout=0.6,
    body_idle_timeout=0.6,
    body_timeout=5.0,
    max_connections=64,
    max_connections_per_client=6,
)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(
        tmp_path / "hub", http=LIMITS, max_envelope_bytes=1024 * 1024, max_concurrent_uploads=1
    ) as live:
        yield live


@pytest.fixture
def clinic(hub: LiveHub) -> PartyKeys:
    return hub.enrol("Clinic A")


def _connect(hub: LiveHub) -> socket.socket:
    return socket.create_connection(("127.0.0.1", hub.port), timeout=5)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds`` (and what it sent first)."""
    deadline = time.monotonic() + seconds
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            part = sock.recv(65536)
        except TimeoutError:
            return False, received
        except ConnectionResetError:
            return True, received
        if not part:
            return True, received
        received += part
    return False, received


def _upload_head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /api/v1/envelopes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _healthy(hub: LiveHub) -> bool:
    return httpx.get(f"{hub.url}/healthz", timeout=5).status_code == 200


def test_silent_socket_is_closed(hub: LiveHub) -> None:
    with _connect(hub) as sock:
        closed, _ = _closed_within(sock, 4)
    assert closed


def test_slow_headers_are_cut_off(hub: LiveHub) -> None:
    """A request head trickled a byte at a time never completes: the socket is closed."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with _connect(hub) as sock:
        closed = False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            done, _ = _closed_within(sock, 0.1)
            if done:
                closed = True
                break
    assert closed
    assert time.monotonic() - started < 4


def test_stalled_body_gets_408_and_is_closed(hub: LiveHub, clinic: PartyKeys) -> None:
    envelope = seal_case(case_document(), clinic, hub.identity())
    before = hub.counts()
    with _connect(hub) as sock:
        sock.sendall(_upload_head(len(envelope)) + envelope[:1000])
        closed, answer = _closed_within(sock, 4)
    assert closed
    assert answer.startswith(b"HTTP/1.1 408"), answer[:40]
    assert b'"request_timeout"' in answer
    assert hub.counts() == before
    assert list((hub.settings.data_dir / "incoming").iterdir()) == []  # spool removed


def test_idle_sockets_cannot_lock_out_a_client(hub: LiveHub) -> None:
    """More sockets than the per-client cap: the extra ones are closed at once, the held
    ones are reaped by the header timeout, and a legitimate request then succeeds."""
    held = [_connect(hub) for _ in range(LIMITS.max_connections_per_client + 4)]
    try:
        time.sleep(0.2)
        refused = sum(_closed_within(sock, 0.3)[0] for sock in held[-4:])
        assert refused == 4
        time.sleep(LIMITS.header_timeout + 0.8)
        assert _healthy(hub)
    finally:
        for sock in held:
            sock.close()


def test_unknown_sender_is_refused_before_its_body(hub: LiveHub, clinic: PartyKeys) -> None:
    """A stranger declares a large body and sends only the envelope's first bytes: the hub
    answers 403 without waiting for (or buffering) the rest."""
    stranger = generate_keys()
    envelope = seal_case(case_document(), stranger, hub.identity())
    with _connect(hub) as sock:
        sock.sendall(_upload_head(1000 * 1024) + envelope[:24])
        _closed, answer = _closed_within(sock, 0.5)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:40]
    assert b'"unknown_clinic"' in answer


def test_signed_upload_for_another_clinic_is_refused(hub: LiveHub, clinic: PartyKeys) -> None:
    from sync_agent.signing import sign_request

    other = hub.enrol("Clinic B")
    envelope = seal_case(case_document(), clinic, hub.identity())
    headers = sign_request(other, "POST", "/api/v1/envelopes", time.time())
    response = hub.post_envelope(envelope, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "sender_mismatch"


def test_too_many_uploads_at_once_get_503(hub: LiveHub, clinic: PartyKeys) -> None:
    envelope = seal_case(case_document(), clinic, hub.identity())
    with _connect(hub) as sock:
        sock.sendall(_upload_head(len(envelope)) + envelope[:5000])
        time.sleep(0.2)  # the first upload holds the only slot
        busy = hub.post_envelope(envelope)
        sock.sendall(envelope[5000:])
        _closed, answer = _closed_within(sock, 1.0)
    assert busy.status_code == 503
    assert busy.json()["error"]["code"] == "busy"
    assert int(busy.headers["Retry-After"]) > 0
    assert answer.startswith(b"HTTP/1.1 200"), answer[:40]
    assert hub.post_envelope(envelope).status_code == 200  # idempotent, slot free again


def test_spool_files_are_private(hub: LiveHub, clinic: PartyKeys) -> None:
    envelope = seal_case(case_document(), clinic, hub.identity())
    with _connect(hub) as sock:
        sock.sendall(_upload_head(len(envelope)) + envelope[:5000])
        time.sleep(0.3)
        spooled = list((hub.settings.data_dir / "incoming").iterdir())
        assert len(spooled) == 1
        assert stat.S_IMODE(spooled[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(spooled[0].parent.stat().st_mode) == 0o700
        sock.sendall(envelope[5000:])
        _closed_within(sock, 1.0)
    assert list((hub.settings.data_dir / "incoming").iterdir()) == []


@pytest.mark.parametrize("after", ["²", "١٢", "-1", "9" * 30])
def test_non_ascii_or_huge_cursor_is_400(hub: LiveHub, clinic: PartyKeys, after: str) -> None:
    from urllib.parse import quote

    from sync_agent.signing import sign_request

    path = f"/api/v1/reviews?after={quote(after)}"
    headers = sign_request(clinic, "GET", path, time.time())
    response = httpx.get(hub.url + path, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_cursor"


# --------------------------------------------------------------------------- logins


def _wrong_logins(hub: LiveHub, count: int, headers: dict[str, str] | None = None) -> list[int]:
    from concurrent.futures import ThreadPoolExecutor

    from tests.review_hub.hub_harness import REVIEWER

    def attempt(_: int) -> int:
        with httpx.Client(base_url=hub.url, timeout=60) as client:
            page = client.get("/review/login")
            csrf = _csrf_or_none(page.text)
            form = {"username": REVIEWER, "password": "wrong password 123"}
            if csrf:
                form["csrf"] = csrf
            return client.post("/review/login", data=form, headers=headers or {}).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(attempt, range(count)))


def _csrf_or_none(page: str) -> str | None:
    from tests.review_hub.hub_harness import CSRF

    found = CSRF.findall(page)
    return found[-1] if found else None


def test_concurrent_wrong_passwords_cannot_race_the_limit(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub", max_login_failures_per_user=5) as hub:
        hub.add_reviewer()
        statuses = _wrong_logins(hub, 30)
    assert statuses.count(401) <= 5, statuses  # at most the limit was hashed and checked
    assert statuses.count(429) >= 25, statuses


def test_forwarded_address_is_believed_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    """Per-address limit 3, behind a proxy at 127.0.0.1: different forwarded clients are
    counted apart; a header sent straight to a hub that trusts no proxy changes nothing."""
    limits = {"max_login_failures_per_ip": 3, "max_login_failures_per_user": 1000}
    proxied = {"trusted_proxy_header": "X-Forwarded-For", "trusted_proxies": ["127.0.0.1"]}
    with running_hub(tmp_path / "a", **limits, **proxied) as hub:
        hub.add_reviewer()
        first = [_wrong_logins(hub, 1, {"X-Forwarded-For": "10.0.0.1"})[0] for _ in range(4)]
        other = _wrong_logins(hub, 1, {"X-Forwarded-For": "spoof, 10.0.0.2"})[0]
    assert first == [401, 401, 401, 429]
    assert other == 401
    with running_hub(tmp_path / "b", **limits) as hub:
        hub.add_reviewer()
        spoofed = [_wrong_logins(hub, 1, {"X-Forwarded-For": f"10.0.0.{i}"})[0] for i in range(4)]
    assert spoofed == [401, 401, 401, 429]


# --------------------------------------------------------------------------- quotas, queue


def test_clinic_over_its_hourly_quota_gets_429_others_do_not(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub", max_cases_per_clinic_per_hour=3) as hub:
        noisy, quiet = hub.enrol("Noisy"), hub.enrol("Quiet")
        for _ in range(3):
            assert hub.send_case(noisy, case_document()).status_code == 200
        refused = hub.send_case(noisy, case_document())
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert int(refused.headers["Retry-After"]) > 0
        assert hub.send_case(quiet, case_document()).status_code == 200
        assert hub.counts()["cases"] == 4


def test_clinic_over_its_daily_bytes_gets_429(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub", max_bytes_per_clinic_per_day=12_000) as hub:
        clinic = hub.enrol()
        sizes = []
        statuses = []
        for _ in range(4):
            envelope = seal_case(case_document(), clinic, hub.identity())
            sizes.append(len(envelope))
            statuses.append(hub.post_envelope(envelope).status_code)
    assert all(5_000 < size < 6_000 for size in sizes)
    assert statuses == [200, 200, 429, 429]  # the third would pass 12,000 bytes


def test_one_clinic_cannot_push_the_others_off_the_queue(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub") as hub:
        flood, other = hub.enrol("Flood"), hub.enrol("Other")
        for _ in range(6):
            hub.send_case(flood, case_document(action="urgent referral"))
        hub.send_case(other, case_document(action="urgent referral"))
        with hub.store() as store:
            first_page = store.queue(limit=2)
            everything = store.queue(limit=100)
            second_page = store.queue(limit=2, offset=2)
    assert {item.clinic_name for item in first_page} == {"Flood", "Other"}
    assert len(everything) == 7
    assert [i.key for i in everything[2:4]] == [i.key for i in second_page]
