"""Attacks on a running clinic box: hostile input that used to crash a handler (500), a
stalled upload body, and photo decodes that starved every other request."""

from __future__ import annotations

import io
import socket
import stat
import threading
import time
from typing import Any

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.edge_server.conftest import LiveServer, photo
from tests.edge_server.test_server_errors import meta, pic, stored_state
from tests.skinspector.core.test_imaging import _png_bomb

pytestmark = pytest.mark.slow

DEEP = "[" * 30_000 + "]" * 30_000  # under the 64 KiB metadata cap
HUGE_INT = "1" * 5000


@pytest.fixture
def server(live_server_factory: Any) -> LiveServer:
    live: LiveServer = live_server_factory(http={"body_idle_timeout": 0.6, "header_timeout": 5.0})
    live.wait_ready()
    return live


def _assert_json_4xx(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:200]
    assert response.headers["content-type"].startswith("application/json")
    code: str = response.json()["error"]["code"]
    return code


@pytest.mark.parametrize(
    "body", [DEEP, f'{{"code": {HUGE_INT}, "device_name": "x"}}', '{"code": ' + DEEP + "}"]
)
def test_hostile_json_at_pairing_is_400(server: LiveServer, body: str) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/pair",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert _assert_json_4xx(response, 400) == "malformed_json"


def _zTXt_png(size: int) -> bytes:
    info = PngInfo()
    info.add_text("Comment", "a" * size, zip=True)  # zTXt: a few KiB that inflate to MiBs
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 100)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _raw_multipart(server: LiveServer, token: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/cases",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "multipart/form-data; boundary=xx",
        },
        timeout=30,
    )


def test_hostile_uploads_get_4xx_and_store_nothing(server: LiveServer) -> None:
    token = server.pair()
    before = stored_state(server.data_dir)
    jpeg = photo(1, 320, 240)
    with server.client(token) as client:
        deep = client.post("/api/v1/cases", files=[meta(DEEP), pic(jpeg)])
        big_int = client.post(
            "/api/v1/cases", files=[meta(f'{{"age_years": {HUGE_INT}}}'), pic(jpeg)]
        )
        ztxt = client.post(
            "/api/v1/cases", files=[meta(), pic(_zTXt_png(5 * 1024 * 1024), "z.png")]
        )
        png_too_big = client.post(
            "/api/v1/cases", files=[meta(), pic(_png_bomb(5000, 5000), "b.png")]
        )
    assert _assert_json_4xx(deep, 400) == "malformed_metadata"
    assert _assert_json_4xx(big_int, 400) == "malformed_metadata"
    assert _assert_json_4xx(ztxt, 400) == "invalid_image"
    assert _assert_json_4xx(png_too_big, 413) == "image_too_large"  # 25 MP: over the PNG cap
    long_header = b"--xx\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\nhi\r\n--xx--\r\n"
    many_headers = (
        b"--xx\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(20_000)) + b"\r\nhi\r\n--xx--\r\n"
    )
    for body in (long_header, many_headers):
        assert _assert_json_4xx(_raw_multipart(server, token, body), 400) == "malformed_multipart"
    assert stored_state(server.data_dir) == before


def test_stalled_upload_body_gets_408(server: LiveServer) -> None:
    token = server.pair()
    before = stored_state(server.data_dir)
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/cases HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + b'--xx\r\nContent-Disposition: form-data; name="photo"\r\n\r\n\xff\xd8')
        received = b""
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            part = sock.recv(65536)
            if not part:
                break
            received += part
    assert received.startswith(b"HTTP/1.1 408"), received[:60]
    assert b'"request_timeout"' in received
    assert stored_state(server.data_dir) == before


def test_large_png_decodes_do_not_stall_other_phones(server: LiveServer) -> None:
    """Several phones upload PNGs that are small on the wire but decode to ~15 MP each;
    another phone's GET must still answer quickly (decodes run on their own bounded pool)."""
    uploader, reader = server.pair("uploader"), server.pair("reader")
    heavy = _png_bomb(3900, 3900)
    assert len(heavy) < 300_000
    results: list[int] = []

    def upload() -> None:
        with server.client(uploader) as client:
            results.append(
                client.post("/api/v1/cases", files=[meta(), pic(heavy, "h.png")]).status_code
            )

    threads = [threading.Thread(target=upload) for _ in range(7)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the decodes are running now
    with server.client(reader) as client:
        started = time.monotonic()
        listed = client.get("/api/v1/cases")
        elapsed = time.monotonic() - started
    for thread in threads:
        thread.join()
    assert listed.status_code == 200
    assert elapsed < 1.5, f"GET took {elapsed:.1f} s while photos decoded"
    assert all(status in (201, 503) for status in results), results


def test_every_data_file_is_private_after_a_flow(server: LiveServer) -> None:
    token = server.pair()
    with server.client(token) as client:
        created = client.post("/api/v1/cases", files=[meta(), pic(photo(2, 320, 240))])
        assert created.status_code == 201
        client.get(f"/api/v1/cases/{created.json()['id']}")
    loose = []
    for path in [server.data_dir, *server.data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.relative_to(server.data_dir)} {oct(mode)}")
    assert not loose, loose


# ------------------------------------------------------------ DNS rebinding, framing


def test_dns_rebinding_host_is_refused(server: LiveServer) -> None:
    """A page on evil.example re-pointed at the box: its requests say Host: evil.example."""
    for path in ("/pair", "/status", "/api/v1/cases", "/app/index.html"):
        response = httpx.get(server.url + path, headers={"Host": "evil.example:8080"})
        assert _assert_json_4xx(response, 400) == "bad_host", path
    pair = httpx.post(
        f"{server.url}/api/v1/pair",
        json={"code": "123456", "device_name": "x"},
        headers={"Host": "evil.example"},
    )
    assert _assert_json_4xx(pair, 400) == "bad_host"
    for host in ("127.0.0.1", "localhost", "[::1]:80"):
        assert httpx.get(server.url + "/healthz", headers={"Host": host}).status_code == 200


def test_cross_origin_pairing_post_is_refused(server: LiveServer) -> None:
    with server.registry() as registry:
        code = registry.create_pairing_code().code
    url = f"{server.url}/api/v1/pair"
    body = {"code": code, "device_name": "x"}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        response = httpx.post(url, json=body, headers={"Origin": origin})
        assert _assert_json_4xx(response, 403) == "cross_origin"
    same = httpx.post(url, json=body, headers={"Origin": server.url})
    assert same.status_code == 201, same.text  # the code was not used up by the refusals


def test_every_page_forbids_framing(server: LiveServer) -> None:
    for path in ("/", "/app/", "/app/index.html", "/status", "/pair", "/healthz"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert response.headers["x-frame-options"] == "DENY"
    index = httpx.get(server.url + "/app/index.html").headers["content-security-policy"]
    assert "default-src 'self'" in index


# ------------------------------------------------------------ which cases a phone sees


def _two_phones(server: LiveServer) -> tuple[str, str, str]:
    first, second = server.pair("first"), server.pair("second")
    with server.client(first) as client:
        created = client.post("/api/v1/cases", files=[meta(), pic(photo(3, 320, 240))])
    assert created.status_code == 201, created.text
    return first, second, created.json()["id"]


def test_default_visibility_is_clinic_wide(live_server_factory: Any) -> None:
    server: LiveServer = live_server_factory()
    assert server.settings.server.case_visibility == "clinic"
    server.wait_ready()
    _first, second, case_id = _two_phones(server)
    with server.client(second) as client:
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 200
        assert [c["id"] for c in client.get("/api/v1/cases").json()["cases"]] == [case_id]
        assert client.get(f"/api/v1/cases/{case_id}/photos/0").status_code == 403


def test_device_visibility_hides_other_phones_cases(live_server_factory: Any) -> None:
    server: LiveServer = live_server_factory(case_visibility="device")
    server.wait_ready()
    first, second, case_id = _two_phones(server)
    with server.client(second) as client:
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 404
        assert client.get(f"/api/v1/cases/{case_id}/events").status_code == 404
        assert client.get("/api/v1/cases").json()["cases"] == []
    with server.client(first) as client:
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 200
        assert [c["id"] for c in client.get("/api/v1/cases").json()["cases"]] == [case_id]
