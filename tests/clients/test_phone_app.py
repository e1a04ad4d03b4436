"""The phone web app in a real headless Chromium against a real box (tiny demo bundle).

The demo model writes random text, so these tests check structure and UI state, not
wording. Screenshots of the main screens go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from edge_server import keys
from skinspector.core.samples import lesion_photo
from tests.clients.conftest import BOX_HOST, SCREENSHOTS
from tests.edge_server.conftest import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FINAL = ("done", "rejected", "failed")
#: Records the longest live text seen while the result streams in (test instrumentation,
#: injected by Playwright; the app itself runs under the box's CSP).
WATCH_LIVE = """
window.__live = {findings: 0, report: 0};
new MutationObserver(() => {
  for (const pass of ['findings', 'report']) {
    const el = document.getElementById('live-' + pass);
    if (el) window.__live[pass] = Math.max(window.__live[pass], el.textContent.length);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
#: The first stored draft photo: its JPEG header, size and corner pixels.
DRAFT_PHOTO = """
async () => {
  const db = await new Promise((ok, fail) => {
    const r = indexedDB.open('skinspector');
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
  const photos = await new Promise((ok) => {
    const q = db.transaction('photos').objectStore('photos').getAll();
    q.onsuccess = () => ok(q.result);
  });
  db.close();
  photos.sort((a, b) => a.order - b.order);
  const blob = photos[0].blob;
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const head = String.fromCharCode(...bytes.slice(0, 2048));
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const px = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
  return {
    count: photos.length, type: blob.type, bytes: bytes.length,
    soi: bytes[0] === 0xff && bytes[1] === 0xd8, exif: head.includes('Exif'),
    width: bitmap.width, height: bitmap.height,
    topLeft: px(8, 8), topRight: px(bitmap.width - 8, 8),
  };
}
"""


# ------------------------------------------------------------------------- helpers


def wait_js(page: Page, expression: str, arg: Any = None, timeout: float = 30) -> Any:
    """Poll a JavaScript expression (or function of ``arg``) until it is truthy.

    ``page.wait_for_function`` compiles its predicate with ``eval`` inside the page, which
    the box's Content-Security-Policy forbids; ``page.evaluate`` goes through the DevTools
    protocol and is not affected.
    """
    end = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression, arg)
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"still false after {timeout}s: {expression}")
        page.wait_for_timeout(100)


def assert_fits_phone(page: Page) -> None:
    """Nothing is wider than the phone's screen (no sideways scrolling)."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def assert_no_stray_text(page: Page) -> None:
    """No text node reads just "null"/"undefined" (a rendering slip)."""
    stray = page.evaluate(
        """() => {
          const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          const found = [];
          while (walk.nextNode()) {
            const text = walk.currentNode.data.trim();
            const where = walk.currentNode.parentElement.outerHTML.slice(0, 120);
            if (text === 'null' || text === 'undefined') found.push(where);
          }
          return found;
        }"""
    )
    assert stray == []


def app_url(server: LiveServer, fragment: str = "") -> str:
    return server.url.replace("127.0.0.1", BOX_HOST) + "/app/" + fragment


def new_code(server: LiveServer) -> str:
    with server.registry() as registry:
        return registry.create_pairing_code().code


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def open_app(page: Page, server: LiveServer, fragment: str = "", root: bool = False) -> None:
    url = app_url(server, fragment)
    page.goto(url.replace("/app/", "/") if root else url)
    wait_js(page, "document.documentElement.dataset.ready === '1'")


def pair(page: Page, server: LiveServer) -> str:
    open_app(page, server)
    page.fill("#pair-code", new_code(server))
    page.click("#pair-submit")
    expect(page.locator("#view-new")).to_be_visible()
    token: str = page.evaluate("localStorage.getItem('sk.token')")
    assert token
    return token


def jpeg_file(data: bytes, name: str = "lesion.jpg") -> dict[str, Any]:
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


def wait_previews(page: Page, count: int) -> None:
    wait_js(
        page,
        "n => { const imgs = [...document.querySelectorAll('#photo-list li.photo img')];"
        " return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        count,
    )


def add_photo(page: Page, data: bytes, count: int) -> None:
    page.set_input_files("#gallery-input", files=[jpeg_file(data)])
    wait_previews(page, count)


def dark_photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (900, 700), (5, 5, 5)).save(buffer, format="JPEG")
    return buffer.getvalue()


def wait_finished(client: httpx.Client, case_id: str, timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        body: dict[str, Any] = client.get(f"/api/v1/cases/{case_id}").json()
        if body["status"] in FINAL:
            return body
        time.sleep(0.2)
    raise TimeoutError(case_id)


def upload(client: httpx.Client, photo: bytes, metadata: dict[str, Any]) -> str:
    files = [
        ("metadata", (None, json.dumps(metadata), "application/json")),
        ("photo", ("p.jpg", photo, "image/jpeg")),
    ]
    response = client.post("/api/v1/cases", files=files)
    assert response.status_code == 201, response.text
    case_id: str = response.json()["id"]
    return case_id


def case_id_from_url(page: Page) -> str:
    page.wait_for_url("**/app/#case=*")
    return page.url.rsplit("#case=", 1)[1]


# ------------------------------------------------------------------------- pairing


def test_pair_by_typing_the_code(live_server: LiveServer, page: Page) -> None:
    open_app(page, live_server, root=True)  # the box's home page is the app too
    assert page.evaluate("window.isSecureContext") is False  # like a phone on clinic Wi-Fi
    expect(page.locator("html")).to_have_attribute("lang", "id")
    expect(page.locator("#view-pair")).to_be_visible()
    expect(page.locator("#tabs")).to_be_hidden()
    expect(page.locator("label[for=pair-code]")).to_have_text("Kode pemasangan (8 angka)")
    shot(page, "01-pairing-id")

    page.fill("#pair-code", "0000 0000")
    page.click("#pair-submit")
    expect(page.locator("#pair-error")).to_have_text(
        "Kode salah atau sudah dipakai. Minta kode baru di kotak."
    )

    page.fill("#pair-code", new_code(live_server))
    page.fill("#pair-name", "Bidan Sari")
    page.click("#pair-submit")
    expect(page.locator("#view-new")).to_be_visible()
    expect(page.locator("#view-pair")).to_be_hidden()
    token = page.evaluate("localStorage.getItem('sk.token')")
    with live_server.client(token) as client:
        assert client.get("/api/v1/info").json()["device"] == "Bidan Sari"
    # The demo box says so loudly: our Indonesian translation and the server's English text.
    expect(page.locator("#demo")).to_be_visible()
    expect(page.locator("#demo-local")).to_contain_text("MODE DEMO")
    expect(page.locator("#demo-server")).to_contain_text("random text")
    expect(page.locator("#device-line")).to_have_text("Ponsel ini: Bidan Sari")
    # The token survives a reload: no second pairing.
    page.reload()
    wait_js(page, "document.documentElement.dataset.ready === '1'")
    expect(page.locator("#view-new")).to_be_visible()


def test_pair_by_qr_link(live_server: LiveServer, page: Page) -> None:
    code = new_code(live_server)
    open_app(page, live_server, f"#pair={code}")
    expect(page.locator("#view-new")).to_be_visible()
    assert page.evaluate("localStorage.getItem('sk.token')")
    assert code not in page.url
    assert "#pair" not in page.url
    page.go_back()  # the link was replaced in history, not pushed: Back cannot show it
    wait_js(page, "!location.hash.startsWith('#new')")
    assert code not in page.url


# ------------------------------------------------------------------------- new case + result


def fill_red_flag_case(page: Page) -> None:
    page.fill("#f-age", "61")
    page.check("#f-sex-male")
    page.select_option("#f-site", "back")
    page.fill("#f-duration", "3")
    page.select_option("#f-duration-unit", "months")
    page.check("#f-sym-bleeding")
    page.fill("#f-notes", "mole changing colour and bleeding")


def test_new_case_streams_result_with_urgent_banner(live_server: LiveServer, page: Page) -> None:
    page.add_init_script(WATCH_LIVE)
    token = pair(page, live_server)
    add_photo(page, lesion_photo(1024, 768, seed=3), 1)
    fill_red_flag_case(page)
    expect(page.locator("#draft-state")).to_have_text("Draf tersimpan di ponsel ini.")
    shot(page, "02-new-case-with-photo")

    page.click("#send-btn")
    case_id = case_id_from_url(page)
    expect(page.locator("#view-case")).to_be_visible()
    wait_js(page, "window.__live.findings > 0 || window.__live.report > 0", timeout=120)
    assert_no_stray_text(page)
    assert_fits_phone(page)
    shot(page, "03-streaming")

    banner = page.locator("#action-banner")
    expect(banner).to_be_visible(timeout=120_000)
    assert page.evaluate("window.__live.findings") > 0  # token text was shown live
    assert page.evaluate("window.__live.report") > 0
    expect(banner).to_have_attribute("data-action", "urgent")
    expect(banner).to_have_class("banner banner-urgent")
    expect(banner.locator(".banner-title")).to_have_text("RUJUK SEGERA")
    assert page.locator("#red-flags li").count() >= 1
    expect(page.locator("#case-status")).to_have_attribute("data-status", "done")
    # The disclaimer (the server's, in the case language) sits right under the banner.
    expect(page.locator("#disclaimer")).to_contain_text("Ini adalah")
    assert page.evaluate(
        "document.getElementById('disclaimer').getBoundingClientRect().top"
        " < document.getElementById('references').getBoundingClientRect().top"
    )
    # The stored photo comes back over the authenticated API as a blob URL.
    wait_js(
        page,
        "() => { const i = document.querySelector('#case-photos img');"
        " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
    )
    # References open to show their text and source.
    first = page.locator("#references details").first
    expect(first.locator(".ref-text")).to_be_hidden()
    first.locator("summary").click()
    expect(first.locator(".ref-text")).to_be_visible()
    expect(first.locator("dl")).to_contain_text(".md")
    assert_no_stray_text(page)
    assert_fits_phone(page)
    shot(page, "04-result-urgent")

    with live_server.client(token) as client:
        context = client.get(f"/api/v1/cases/{case_id}").json()["context"]
    assert context == {
        "age_years": 61,
        "sex": "male",
        "body_site": "Punggung",
        "duration": "3 bulan",
        "symptoms": ["berdarah"],
        "notes": "mole changing colour and bleeding",
        "language": "id",
    }
    # The draft was handed over: the new-case form is empty again.
    page.click("#tabs a[href='#new']")
    expect(page.locator("#photo-list li")).to_have_count(0)
    expect(page.locator("#f-notes")).to_have_value("")


def test_switch_language(live_server: LiveServer, page: Page) -> None:
    pair(page, live_server)
    add_photo(page, lesion_photo(800, 600, seed=5), 1)
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "id")
    expect(page.locator("#new-title")).to_have_text("Kasus baru")
    expect(page.locator("#f-site option[value=back]")).to_have_text("Punggung")
    expect(page.locator("#lang-switch")).to_have_text("English")
    assert_fits_phone(page)
    shot(page, "05-new-case-id")

    page.click("#lang-switch")
    expect(html).to_have_attribute("lang", "en")
    expect(page.locator("#new-title")).to_have_text("New case")
    expect(page.locator("#f-site option[value=back]")).to_have_text("Back")
    expect(page.locator("label[for=f-age]")).to_have_text("Age (years)")
    expect(page.locator("#photo-list .photo-name").first).to_contain_text("Photo 1")
    expect(page.locator("#lang-switch")).to_have_text("Bahasa Indonesia")
    expect(page.locator("#demo-local")).to_be_hidden()
    assert page.title().startswith("SKINspectoR – skin")
    assert_fits_phone(page)
    shot(page, "06-new-case-en")

    # Every string exists in both languages, and no marked element is left empty.
    missing = page.evaluate(
        """async () => {
          const m = await import('/app/i18n.js');
          const id = Object.keys(m.STRINGS.id), en = Object.keys(m.STRINGS.en);
          return [id.filter(k => !en.includes(k)), en.filter(k => !id.includes(k))];
        }"""
    )
    assert missing == [[], []]
    # Labelled fields and large touch targets.
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => !e.labels || !e.labels.length).map(e => e.id || e.name)"
    )
    assert unlabelled == []
    small = page.evaluate(
        """() => [...document.querySelectorAll(
             'button, a, label.btn, .choice span, select, summary, input:not([type=file])')]
          .filter(e => e.offsetParent !== null && !e.closest('.visually-hidden'))
          .filter(e => {
            const box = (e.matches('input[type=radio], input[type=checkbox]')
              ? e.parentElement : e).getBoundingClientRect();
            return box.height < 48 || box.width < 48;
          })
          .map(e => e.outerHTML.slice(0, 80))"""
    )
    assert small == []
    empty = page.evaluate(
        "[...document.querySelectorAll('[data-i18n]')]"
        ".filter(e => !e.textContent.trim()).map(e => e.dataset.i18n)"
    )
    assert empty == []

    # The choice is kept, and the case list follows it too.
    page.reload()
    wait_js(page, "document.documentElement.dataset.ready === '1'")
    expect(html).to_have_attribute("lang", "en")
    page.click("#tabs a[href='#cases']")
    expect(page.locator("#cases-title")).to_have_text("Cases")
    page.click("#lang-switch")
    expect(page.locator("#cases-title")).to_have_text("Daftar kasus")
    expect(html).to_have_attribute("lang", "id")


# ------------------------------------------------------------------------- draft


def test_draft_survives_reload(live_server: LiveServer, page: Page) -> None:
    pair(page, live_server)
    # A 12 MP camera photo stored sideways (EXIF orientation 6) with GPS in its EXIF.
    big = lesion_photo(4000, 3000, seed=2, orientation=6, with_gps=True)
    add_photo(page, big, 1)
    add_photo(page, lesion_photo(1024, 768, seed=4), 2)
    page.fill("#f-age", "34")
    page.check("#f-sex-female")
    page.select_option("#f-site", "other")
    page.fill("#f-site-other", "belakang telinga kiri")
    page.fill("#f-duration", "2")
    page.select_option("#f-duration-unit", "weeks")
    page.check("#f-sym-itch")
    page.check("#f-sym-pain")
    page.fill("#f-notes", "gatal terutama malam hari")
    # Remove the second photo, then retake the first with the camera.
    page.locator("#photo-list li.photo").nth(1).get_by_role("button", name="Hapus").click()
    wait_previews(page, 1)
    expect(page.locator("#draft-state")).to_have_text("Draf tersimpan di ponsel ini.")

    page.reload()
    wait_js(page, "document.documentElement.dataset.ready === '1'")
    wait_previews(page, 1)
    expect(page.locator("#f-age")).to_have_value("34")
    expect(page.locator("#f-sex-female")).to_be_checked()
    expect(page.locator("#f-site")).to_have_value("other")
    expect(page.locator("#f-site-other")).to_have_value("belakang telinga kiri")
    expect(page.locator("#f-duration")).to_have_value("2")
    expect(page.locator("#f-duration-unit")).to_have_value("weeks")
    expect(page.locator("#f-sym-itch")).to_be_checked()
    expect(page.locator("#f-sym-pain")).to_be_checked()
    expect(page.locator("#f-sym-fever")).not_to_be_checked()
    expect(page.locator("#f-notes")).to_have_value("gatal terutama malam hari")
    shot(page, "07-draft-after-reload")

    # Downscaled on the phone (long side 1600), turned upright, EXIF (and GPS) gone.
    stored = page.evaluate(DRAFT_PHOTO)
    assert stored["count"] == 1
    assert stored["type"] == "image/jpeg"
    assert stored["soi"]
    assert not stored["exif"]
    assert (stored["width"], stored["height"]) == (1200, 1600)
    red = stored["topRight"]  # the red top-left marker, after a 90° clockwise turn
    assert red[0] > 180, stored
    assert max(red[1], red[2]) < 90, stored
    assert stored["bytes"] < 600_000

    # Retake replaces the photo in place with a new camera shot.
    with page.expect_file_chooser() as chooser:
        page.locator("#photo-list li.photo").first.get_by_role("button", name="Ulangi").click()
    chooser.value.set_files(files=[jpeg_file(lesion_photo(1024, 768, seed=9))])
    wait_js(page, "() => document.querySelector('#photo-list img')?.dataset.width === '1024'")
    wait_previews(page, 1)
    page.reload()
    wait_js(page, "document.documentElement.dataset.ready === '1'")
    wait_previews(page, 1)
    expect(page.locator("#photo-list img")).to_have_attribute("data-width", "1024")


# ------------------------------------------------------------------------- offline box


def test_case_waits_on_phone_until_the_box_is_back(
    live_server_factory: Any, page: Page, tmp_path: Path
) -> None:
    data_dir = tmp_path / "box"
    first = live_server_factory(data_dir=data_dir)
    first.wait_ready()
    port = first.running.port
    token = pair(page, first)
    page.click("#lang-switch")  # English: the answer language follows the UI
    add_photo(page, lesion_photo(1024, 768, seed=6), 1)
    page.fill("#f-age", "45")
    page.check("#f-sym-itch")
    page.fill("#f-notes", "itchy ring on the arm")

    asyncio.run_coroutine_threadsafe(first.running.stop(), first.loop).result(60)
    page.click("#send-btn")
    expect(page.locator("#view-cases")).to_be_visible()
    waiting = page.locator("#outbox-list li.outbox-row")
    expect(waiting).to_have_count(1)
    expect(waiting).to_have_attribute("data-state", "waiting")
    expect(waiting.locator(".chip")).to_have_text("Waiting to send")
    expect(page.locator("#notice")).to_contain_text("saved on this phone")
    expect(page.locator("#conn")).to_be_visible()
    expect(page.locator("#outbox-badge")).to_have_text("1")
    assert_no_stray_text(page)
    assert_fits_phone(page)
    shot(page, "08-waiting-to-send")

    second = live_server_factory(data_dir=data_dir, port=port)
    assert second.url == first.url
    expect(page.locator("#outbox-list li")).to_have_count(0, timeout=60_000)
    expect(page.locator("#case-list li.case-row")).to_have_count(1)
    expect(page.locator("#conn")).to_be_hidden()
    with second.client(token) as client:  # the device token lives in the data dir
        cases = client.get("/api/v1/cases").json()["cases"]
        assert len(cases) == 1
        assert cases[0]["context"]["language"] == "en"
        assert cases[0]["context"]["symptoms"] == ["itch"]
        assert cases[0]["context"]["notes"] == "itchy ring on the arm"
        second.wait_ready()
        wait_finished(client, cases[0]["id"])
    expect(page.locator("#case-list li.case-row")).to_have_attribute(
        "data-status", "done", timeout=30_000
    )


OUTBOX = """
async () => {
  const db = await new Promise((ok, fail) => {
    const r = indexedDB.open('skinspector');
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
  const items = await new Promise((ok) => {
    const q = db.transaction('outbox').objectStore('outbox').getAll();
    q.onsuccess = () => ok(q.result);
  });
  db.close();
  return items.map((i) => ({
    state: i.state, metadata: i.metadata,
    photos: i.photos.map((b) => [b instanceof Blob, b.type, b.size]),
  }));
}
"""


def test_waiting_case_is_sent_when_the_app_starts_again(
    live_server_factory: Any, page: Page, tmp_path: Path
) -> None:
    data_dir = tmp_path / "box"
    first = live_server_factory(data_dir=data_dir)
    first.wait_ready()
    token = pair(page, first)
    add_photo(page, lesion_photo(1024, 768, seed=7), 1)
    page.fill("#f-notes", "bercak gatal di lengan")
    asyncio.run_coroutine_threadsafe(first.running.stop(), first.loop).result(60)
    page.click("#send-btn")
    expect(page.locator("#outbox-list li.outbox-row")).to_have_count(1)
    # On the phone: the metadata and the photo as a Blob, in IndexedDB.
    [stored] = page.evaluate(OUTBOX)
    assert stored["state"] == "waiting"
    assert stored["metadata"]["notes"] == "bercak gatal di lengan"
    assert stored["metadata"]["language"] == "id"
    assert stored["photos"][0][:2] == [True, "image/jpeg"]
    assert stored["photos"][0][2] > 10_000

    # The worker closes the app; later the box is back and the app is opened again.
    page.goto("about:blank")
    second = live_server_factory(data_dir=data_dir, port=first.running.port)
    open_app(page, second, "#cases")
    expect(page.locator("#outbox-list li")).to_have_count(0, timeout=30_000)
    expect(page.locator("#case-list li.case-row")).to_have_count(1)
    assert page.evaluate(OUTBOX) == []
    with second.client(token) as client:
        [case] = client.get("/api/v1/cases").json()["cases"]
        assert case["context"]["notes"] == "bercak gatal di lengan"
        second.wait_ready()
        wait_finished(client, case["id"])


# ------------------------------------------------------------------------- revoked


def test_revoked_phone_goes_back_to_pairing(live_server: LiveServer, page: Page) -> None:
    pair(page, live_server)
    device = page.evaluate("JSON.parse(localStorage.getItem('sk.device'))")
    with live_server.registry() as registry:
        assert registry.revoke(device["id"])
    page.click("#tabs a[href='#cases']")
    expect(page.locator("#view-pair")).to_be_visible()
    notice = page.locator("#pair-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("dilepas dari kotak")
    assert page.evaluate("localStorage.getItem('sk.token')") is None
    expect(page.locator("#tabs")).to_be_hidden()
    shot(page, "09-revoked")

    page.reload()  # the message stays until the phone is paired again
    wait_js(page, "document.documentElement.dataset.ready === '1'")
    expect(notice).to_be_visible()
    page.fill("#pair-code", new_code(live_server))
    page.click("#pair-submit")
    expect(page.locator("#view-new")).to_be_visible()
    assert page.evaluate("localStorage.getItem('sk.revoked')") is None


# ------------------------------------------------------------------------- quality gate


def test_rejected_photo_shows_reason_and_retake(live_server: LiveServer, page: Page) -> None:
    pair(page, live_server)
    page.set_input_files("#gallery-input", files=[jpeg_file(dark_photo(), "dark.jpg")])
    wait_previews(page, 1)
    page.fill("#f-age", "8")
    page.click("#send-btn")
    case_id_from_url(page)
    expect(page.locator("#rejected-banner")).to_be_visible(timeout=120_000)
    expect(page.locator("#case-status")).to_have_attribute("data-status", "rejected")
    bad = page.locator("#case-photos li.photo-bad")
    expect(bad).to_have_count(1)
    expect(bad.locator("li[data-code=too_dark]")).to_be_visible()
    expect(page.locator("#disclaimer")).to_contain_text("Ini adalah")

    page.click("#retake-case")
    expect(page.locator("#view-new")).to_be_visible()
    wait_previews(page, 1)
    photo = page.locator("#photo-list li.photo")
    expect(photo).to_have_class("photo photo-bad")
    expect(photo.locator(".photo-issues li[data-code=too_dark]")).not_to_be_empty()
    expect(page.locator("#f-age")).to_have_value("8")  # the form comes back too
    assert_fits_phone(page)
    shot(page, "10-retake-with-reason")
    with page.expect_file_chooser() as chooser:
        photo.get_by_role("button", name="Ulangi").click()
    chooser.value.set_files(files=[jpeg_file(lesion_photo(1024, 768, seed=8))])
    expect(page.locator("#photo-list li.photo-bad")).to_have_count(0)
    wait_previews(page, 1)


# ------------------------------------------------------------------------- case list


def test_case_list_shows_real_statuses(live_server: LiveServer, page: Page) -> None:
    token = pair(page, live_server)
    with live_server.client(token) as client:
        urgent = upload(client, lesion_photo(seed=11), {"notes": "mole bleeding", "language": "id"})
        rejected = upload(client, dark_photo(), {"language": "id"})
        reviewed = upload(client, lesion_photo(seed=12), {"body_site": "lengan", "language": "id"})
        for case_id in (urgent, rejected, reviewed):
            wait_finished(client, case_id)
        sent_later = upload(client, lesion_photo(seed=13), {"language": "id"})
        wait_finished(client, sent_later)
        fresh = upload(client, lesion_photo(seed=14), {"language": "id"})
    # What the sync agent does: the hub acknowledged two cases, and one review came back.
    app = live_server.running.app
    outbox = app[keys.OUTBOX]
    for case_id in (sent_later, reviewed):
        outbox.attach_envelope(case_id, f"env-{case_id}", f"digest-{case_id}", b"sealed")
        assert outbox.mark_sent(case_id, f"digest-{case_id}")
    app[keys.STORE].set_review(
        reviewed,
        {
            "format": 1,
            "case_id": reviewed,
            "reviewer": "dr. Ayu, SpKK",
            "diagnosis": "Tinea corporis",
            "management": "Krim antijamur 2 minggu.",
            "urgency": "self-care",
            "message": "Kontrol bila tidak membaik.",
            "reviewed_at": time.time(),
        },
    )
    outbox.mark_reviewed(reviewed)

    page.click("#tabs a[href='#cases']")
    rows = page.locator("#case-list li.case-row")
    expect(rows).to_have_count(5)
    status = {
        rid: page.locator(f"#case-list li[data-id='{rid}']").get_attribute("data-status")
        for rid in (urgent, rejected, reviewed, sent_later, fresh)
    }
    assert status[urgent] == "done"
    assert status[rejected] == "rejected"
    assert status[reviewed] == "reviewed"
    assert status[sent_later] == "sent"
    assert status[fresh] in ("queued", "analysing", "done")
    row = page.locator(f"#case-list li[data-id='{urgent}']")
    expect(row.locator(".action-urgent")).to_have_text("RUJUK SEGERA")
    expect(page.locator(f"#case-list li[data-id='{sent_later}'] .chip-sent")).to_have_text(
        "Dikirim ke dokter kulit"
    )
    expect(page.locator(f"#case-list li[data-id='{reviewed}'] .chip-reviewed")).to_have_text(
        "Sudah ditinjau dokter kulit"
    )
    # Newest first.
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == [fresh, sent_later, reviewed, rejected, urgent]
    assert_no_stray_text(page)
    assert_fits_phone(page)
    shot(page, "11-case-list")

    page.click(f"#case-list li[data-id='{reviewed}'] a")
    review = page.locator("#review")
    expect(review).to_be_visible()
    expect(review).to_contain_text("dr. Ayu, SpKK")
    expect(review).to_contain_text("Tinea corporis")
    expect(review).to_contain_text("Perawatan mandiri")
    expect(review).to_contain_text("Krim antijamur 2 minggu.")
    expect(review).to_contain_text("Kontrol bila tidak membaik.")
    expect(page.locator("#case-status")).to_have_attribute("data-status", "reviewed")
    page.go_back()
    expect(page.locator(f"#case-list li[data-id='{reviewed}'] .row-review")).to_contain_text(
        "Tinea corporis"
    )
    page.go_forward()
    expect(review).to_be_visible()
    assert_no_stray_text(page)
    assert_fits_phone(page)
    shot(page, "12-case-reviewed")
    page.go_back()
    page.click(f"#case-list li[data-id='{sent_later}'] a")
    expect(page.locator("#sync-note")).to_contain_text("Kasus ini sudah dikirim ke dokter kulit")
    expect(page.locator("#case-status")).to_have_attribute("data-status", "sent")
    shot(page, "13-case-sent")
    with live_server.client(token) as client:
        wait_finished(client, fresh)
