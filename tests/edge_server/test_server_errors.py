"""Bad requests: each gets a 4xx JSON error and stores nothing."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from skinspector.core.samples import lesion_photo
from tests.edge_server.conftest import LiveServer, photo
from tests.skinspector.core.test_imaging import _png_bomb

pytestmark = pytest.mark.slow

GOOD_META = json.dumps({"age_years": 30, "language": "en"})


def multipart(*parts: tuple[str, Any]) -> list[tuple[str, Any]]:
    return list(parts)


def meta(value: str | bytes = GOOD_META) -> tuple[str, Any]:
    return ("metadata", (None, value, "application/json"))


def pic(data: bytes, name: str = "p.jpg") -> tuple[str, Any]:
    return ("photo", (name, data, "image/jpeg"))


def stored_state(data_dir: Path) -> tuple[int, list[str]]:
    import sqlite3

    with sqlite3.connect(data_dir / "cases.sqlite3") as db:
        count = db.execute("SELECT COUNT(*) FROM cases").fetchone()[0]
    files = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "photos").rglob("*"))
    return count, files


JPEG = photo(1, 640, 480)
BAD_UPLOADS: dict[str, tuple[Callable[[], dict[str, Any]], int, str]] = {
    "not_an_image": (
        lambda: {"files": [meta(), pic(b"hello, not a photo" * 20)]},
        415,
        "unsupported_image",
    ),
    "truncated_jpeg": (
        lambda: {"files": [meta(), pic(JPEG[: len(JPEG) // 2])]},
        400,
        "invalid_image",
    ),
    "zero_byte_photo": (lambda: {"files": [meta(), pic(b"")]}, 400, "invalid_image"),
    "decompression_bomb": (
        lambda: {"files": [meta(), pic(_png_bomb(30_000, 30_000), "b.png")]},
        413,
        "image_too_large",
    ),
    "gif_photo": (
        lambda: {
            "files": [
                meta(),
                pic(base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")),
            ]
        },
        415,
        "unsupported_image",
    ),
    "four_photos": (lambda: {"files": [meta(), *[pic(JPEG)] * 4]}, 400, "too_many_photos"),
    "no_photo": (lambda: {"files": [meta()]}, 400, "missing_photo"),
    "no_metadata": (lambda: {"files": [pic(JPEG)]}, 400, "missing_metadata"),
    "metadata_not_json": (
        lambda: {"files": [meta("{age: 3"), pic(JPEG)]},
        400,
        "malformed_metadata",
    ),
    "metadata_not_object": (
        lambda: {"files": [meta("[1, 2]"), pic(JPEG)]},
        400,
        "malformed_metadata",
    ),
    "age_wrong_type": (
        lambda: {"files": [meta('{"age_years": "old"}'), pic(JPEG)]},
        422,
        "invalid_fields",
    ),
    "age_out_of_range": (
        lambda: {"files": [meta('{"age_years": 500}'), pic(JPEG)]},
        422,
        "invalid_fields",
    ),
    "unknown_language": (
        lambda: {"files": [meta('{"language": "fr"}'), pic(JPEG)]},
        422,
        "invalid_fields",
    ),
    "identifying_field": (
        lambda: {"files": [meta('{"patient_name": "Siti"}'), pic(JPEG)]},
        422,
        "invalid_fields",
    ),
    "notes_too_long": (
        lambda: {"files": [meta(json.dumps({"notes": "x" * 5000})), pic(JPEG)]},
        422,
        "invalid_fields",
    ),
    "duplicate_metadata": (
        lambda: {"files": [meta(), meta(), pic(JPEG)]},
        400,
        "duplicate_metadata",
    ),
    "unexpected_part": (
        lambda: {"files": [meta(), pic(JPEG), ("script", (None, "x"))]},
        400,
        "unexpected_part",
    ),
    "json_body": (lambda: {"json": {"photo": "x"}}, 415, "unsupported_media_type"),
    "form_urlencoded": (lambda: {"data": {"metadata": GOOD_META}}, 415, "unsupported_media_type"),
    "huge_metadata": (
        lambda: {"files": [meta("{" + " " * 70_000 + "}"), pic(JPEG)]},
        413,
        "part_too_large",
    ),
    "oversized_body": (
        lambda: {"files": [meta(), pic(b"\xff\xd8" + b"\0" * (26 * 1024 * 1024))]},
        413,
        "part_too_large",
    ),
    "path_trick_filename": (
        lambda: {"files": [meta(), pic(b"not an image", "../../../etc/passwd")]},
        415,
        "unsupported_image",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_refused_and_nothing_stored(
    live_server: LiveServer, case: str, token_cache: dict[str, str]
) -> None:
    # Keyed by data folder: a later server may reuse a freed port (same URL).
    token = token_cache.setdefault(str(live_server.data_dir), live_server.pair())
    build, status, code = BAD_UPLOADS[case]
    before = stored_state(live_server.data_dir)
    with live_server.client(token) as client:
        response = client.post("/api/v1/cases", **build())
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    assert stored_state(live_server.data_dir) == before
    assert not (live_server.data_dir.parent / "etc").exists()


@pytest.fixture(scope="module")
def token_cache() -> dict[str, str]:
    return {}


def test_request_errors_outside_uploads(live_server: LiveServer) -> None:
    token = live_server.pair()
    with live_server.client(token) as client:
        cases = {
            "unknown case id": (client.get(f"/api/v1/cases/{'0' * 32}"), 404),
            "malformed case id": (client.get("/api/v1/cases/..%2F..%2Fetc"), 404),
            "unknown route": (client.get("/api/v1/nothing"), 404),
            "wrong method": (client.delete("/api/v1/cases"), 405),
            "bad paging": (client.get("/api/v1/cases", params={"limit": "lots"}), 400),
            "paging out of range": (client.get("/api/v1/cases", params={"limit": 0}), 400),
            "events of unknown case": (client.get(f"/api/v1/cases/{'f' * 32}/events"), 404),
        }
    for name, (response, status) in cases.items():
        assert response.status_code == status, name
        assert "error" in response.json(), name


def test_missing_invalid_and_revoked_tokens(live_server: LiveServer) -> None:
    with live_server.client() as client:
        missing = client.get("/api/v1/cases")
    with live_server.client("not-a-real-token") as client:
        invalid = client.get("/api/v1/cases")
    token = live_server.pair("lost phone")
    with live_server.registry() as registry:
        device = next(d for d in registry.list_devices() if d.name == "lost phone")
        registry.revoke(device.id)
    with live_server.client(token) as client:
        revoked = client.post("/v1/chat/completions", json={"messages": []})
    for response in (missing, invalid, revoked):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_pairing_errors(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/v1/pair"
    with live_server.registry(clock=lambda: time.time() - 3600) as old:
        expired = old.create_pairing_code().code
    response = httpx.post(url, json={"code": expired, "device_name": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "pairing_code_expired"
    with live_server.registry() as registry:
        code = registry.create_pairing_code().code
    assert httpx.post(url, json={"code": code, "device_name": "a"}).status_code == 201
    reused = httpx.post(url, json={"code": code, "device_name": "b"})
    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "pairing_code_invalid"
    assert (
        httpx.post(
            url, content=b"code=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
        ).status_code
        == 415
    )
    assert httpx.post(url, json={"code": "1"}).status_code == 422
    statuses = [
        httpx.post(url, json={"code": "00000000", "device_name": "guess"}).status_code
        for _ in range(6)
    ]
    assert statuses[-1] == 429
    limited = httpx.post(url, json={"code": "00000000", "device_name": "guess"})
    assert int(limited.headers["retry-after"]) > 0


def test_openai_endpoint_errors(live_server: LiveServer) -> None:
    token = live_server.pair()
    with live_server.client(token) as client:
        remote = client.post(
            "/v1/chat/completions",
            json={
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "http://example.com/x.jpg"}}
                        ],
                    }
                ]
            },
        )
        assert remote.status_code == 400
        assert remote.json()["error"]["code"] == "unsupported_image_url"
        local = client.post(
            "/v1/chat/completions",
            json={
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
                        ],
                    }
                ]
            },
        )
        assert local.status_code == 400
        bad_b64 = client.post(
            "/v1/chat/completions",
            json={
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,@@"}}
                        ],
                    }
                ]
            },
        )
        assert bad_b64.status_code == 400
        empty = client.post("/v1/chat/completions", json={"messages": []})
        assert empty.status_code == 400  # OpenAI answers invalid requests with 400
        assert set(empty.json()["error"]) >= {"message", "type", "param", "code"}
        assert (
            client.post(
                "/v1/chat/completions",
                content=b"{oops",
                headers={"Content-Type": "application/json"},
            ).status_code
            == 400
        )
        wrong_model = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert wrong_model.status_code == 404
        not_image = base64.b64encode(b"plain text").decode()
        fake = client.post(
            "/v1/chat/completions",
            json={
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": f"data:image/png;base64,{not_image}"},
                            }
                        ],
                    }
                ]
            },
        )
        assert fake.status_code == 400  # OpenAI's status for an image it cannot read
        assert fake.json()["error"]["code"] == "invalid_image"
        assert fake.json()["error"]["param"] == "messages.0.content.0"


def test_big_json_body_is_refused(live_server: LiveServer) -> None:
    token = live_server.pair()
    big = base64.b64encode(lesion_photo(64, 64) * 1).decode() * 1
    payload = {"messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}], "x": big}
    with live_server.client(token) as client:
        response = client.post("/v1/chat/completions", json=payload)
    assert response.status_code == 413
