"""Checkpoint review: the review set, durable marks, the summary, import of exported marks,
the real aiohttp server on 127.0.0.1, and the page in Chromium (marked ``browser``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.chromium import launch_chromium
from tests.threaded_loop import serve_in_background
from training.evaluation_errors import EvaluationInputError
from training.review import (
    EXPORT_FORMAT,
    Mark,
    MarkStore,
    ReviewSet,
    export_document,
    import_marks,
    load_review_set,
    render_summary,
    summarize,
)
from training.review_server import RunningReview, start_review_server

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def write_generations(folder: Path, rows: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Checkpoints 100, 200 and 1000 over four images (1000 has one more example);
    checkpoint-50 has no generations and is not reviewed."""
    run = tmp_path / "run"
    images = tmp_path / "images"
    images.mkdir()
    colours = [(200, 60, 60), (60, 160, 60), (60, 60, 200), (180, 140, 90), (9, 9, 9)]
    for i, colour in enumerate(colours):
        Image.new("RGB", (64 + 8 * i, 48), colour).save(images / f"img{i}.png")
    diseases = ["psoriasis", "basal cell carcinoma", None, "impetigo", "melanoma"]
    for step in (1000, 100, 200):
        count = 5 if step == 1000 else 4
        rows = [
            {
                "id": f"ex{i}",
                "image": str(images / f"img{i}.png"),
                "disease": diseases[i],
                "reference": f"reference caption {i} <b>not bold</b>",
                "prediction": f"step {step} says {i}: </script><img src=x onerror=alert(1)>",
                "seed": 42 + i,
                "step": step,
            }
            for i in range(count)
        ]
        write_generations(run / f"checkpoint-{step}", rows)
    (run / "checkpoint-50").mkdir()
    return run


@pytest.fixture
def review(run_dir: Path) -> ReviewSet:
    return load_review_set(run_dir)


def mark(
    checkpoint: str, example: str, labels: tuple[str, ...], t: float, who: str = "ani"
) -> Mark:
    return Mark(checkpoint, example, who, labels, "", t)


# ---------------------------------------------------------------- library


def test_review_set(review: ReviewSet) -> None:
    assert [c.name for c in review.checkpoints] == [
        "checkpoint-100",
        "checkpoint-200",
        "checkpoint-1000",
    ]
    assert [c.step for c in review.checkpoints] == [100, 200, 1000]
    assert [item.id for item in review.items] == ["ex0", "ex1", "ex2", "ex3"]  # common ids
    assert review.items[2].disease is None
    assert review.checkpoints[2].generations["ex1"].startswith("step 1000 says 1")


def test_no_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match=r"no checkpoint-<N>/generations\.jsonl"):
        load_review_set(tmp_path)


def test_latest_mark_wins_by_time_then_file_order(review: ReviewSet) -> None:
    store = MarkStore(review.marks_path)
    store.append([mark("checkpoint-100", "ex0", ("accurate",), 10.0)])
    store.append([mark("checkpoint-100", "ex0", ("unsafe",), 5.0)])  # older: loses
    store.append([mark("checkpoint-100", "ex1", ("hedged",), 7.0)])
    store.append([mark("checkpoint-100", "ex1", ("wrong_diagnosis",), 7.0)])  # tie: later wins
    latest = store.latest()
    assert latest["checkpoint-100", "ex0", "ani"].labels == ("accurate",)
    assert latest["checkpoint-100", "ex1", "ani"].labels == ("wrong_diagnosis",)
    assert len(review.marks_path.read_text().splitlines()) == 4  # append-only


def test_a_torn_last_line_is_skipped_and_not_glued_to_the_next_mark(review: ReviewSet) -> None:
    store = MarkStore(review.marks_path)
    store.append([mark("checkpoint-100", "ex0", ("accurate",), 1.0)])
    with review.marks_path.open("a") as handle:
        handle.write('{"checkpoint": "checkpoint-100", "id": "ex1", "revi')  # power cut
    store.append([mark("checkpoint-200", "ex2", ("unsafe",), 2.0)])
    assert [(m.checkpoint, m.id) for m in store.read()] == [
        ("checkpoint-100", "ex0"),
        ("checkpoint-200", "ex2"),
    ]


def test_summary_counts_and_rates(review: ReviewSet) -> None:
    marks = [
        mark("checkpoint-100", "ex0", ("accurate", "hedged"), 1),
        mark("checkpoint-100", "ex1", ("wrong_diagnosis",), 1),
        mark("checkpoint-100", "ex1", ("accurate",), 2, who="budi"),
        mark("checkpoint-100", "ex2", (), 3),  # withdrawn: not reviewed
        mark("checkpoint-200", "ex0", ("hallucinated", "unsafe"), 1),
        mark("checkpoint-200", "ex4", ("accurate",), 1),  # not a common example
    ]
    by_name = {s.checkpoint: s for s in summarize(review, marks)}
    first = by_name["checkpoint-100"]
    assert first.items == 4
    assert first.reviewed == 3
    assert first.counts == {
        "accurate": 2,
        "hedged": 1,
        "wrong_diagnosis": 1,
        "hallucinated": 0,
        "unsafe": 0,
    }
    assert first.rates["accurate"] == pytest.approx(2 / 3)
    assert first.reviewers == ("ani", "budi")
    second = by_name["checkpoint-200"]
    assert second.reviewed == 1
    assert second.counts["unsafe"] == 1
    assert second.counts["accurate"] == 0
    assert by_name["checkpoint-1000"].reviewed == 0
    text = render_summary(list(by_name.values()))
    assert "appropriately hedged" in text
    assert "2 (67%)" in text


def test_import_marks(review: ReviewSet, tmp_path: Path) -> None:
    MarkStore(review.marks_path).append([mark("checkpoint-200", "ex3", ("accurate",), 500.0)])
    exported = export_document(
        "run",
        [
            mark("checkpoint-100", "ex0", ("accurate",), 100.0),
            mark("checkpoint-200", "ex3", ("unsafe",), 50.0),  # older than the stored mark
        ],
    )
    path = tmp_path / "marks.json"
    path.write_text(json.dumps(exported))
    assert import_marks(review, path) == (2, 0)
    assert import_marks(review, path) == (0, 2)  # idempotent
    latest = MarkStore(review.marks_path).latest()
    assert latest["checkpoint-100", "ex0", "ani"].labels == ("accurate",)
    assert latest["checkpoint-200", "ex3", "ani"].labels == ("accurate",)  # newer kept


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"checkpoint": "checkpoint-7"}, "unknown checkpoint"),
        ({"id": "ex4"}, "unknown example id"),
        ({"labels": ["great"]}, "unknown labels"),
        ({"reviewer": ""}, "reviewer"),
        ({"time": None}, "needs its time"),
        ({"note": "x" * 2001}, "at most 2000"),
    ],
)
def test_import_rejects_the_whole_file(
    review: ReviewSet, tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    good = mark("checkpoint-100", "ex0", ("accurate",), 1.0).to_json()
    document = {"format": EXPORT_FORMAT, "version": 1, "marks": [good, {**good, **bad}]}
    path = tmp_path / "marks.json"
    path.write_text(json.dumps(document))
    with pytest.raises(EvaluationInputError, match=message):
        import_marks(review, path)
    assert not review.marks_path.exists()  # nothing written


def test_import_rejects_other_files(review: ReviewSet, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else", "marks": []}')
    with pytest.raises(EvaluationInputError, match=EXPORT_FORMAT):
        import_marks(review, path)
    path.write_text("not json")
    with pytest.raises(EvaluationInputError, match="not a JSON marks export"):
        import_marks(review, path)


# ----------------------------------------------------------------- server


@contextmanager
def running_review(review: ReviewSet) -> Iterator[RunningReview]:
    with serve_in_background(
        lambda: start_review_server(review, "127.0.0.1", 0),
        lambda running: running.stop(),
        what="review server",
        timeout=30,
    ) as bg:
        yield bg.running


def page_token(html: str) -> str:
    data = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S)
    assert data is not None
    return str(json.loads(data.group(1))["token"])


def test_server_records_marks_and_summarises(review: ReviewSet) -> None:
    with running_review(review) as server, httpx.Client(base_url=server.url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "</script><img" not in page.text  # model output cannot break out of the JSON
        token = page_token(page.text)
        assert client.get("static/review.js").headers["content-type"].startswith("text/javascript")

        body = {
            "checkpoint": "checkpoint-200",
            "id": "ex1",
            "reviewer": "dr. Ani",
            "labels": ["wrong_diagnosis", "hallucinated"],
            "note": "calls it eczema",
        }
        answer = client.post("api/marks", json=body, headers={"X-Review-Token": token})
        assert answer.status_code == 200, answer.text
        saved = answer.json()
        assert saved["mark"]["labels"] == ["wrong_diagnosis", "hallucinated"]
        row = next(s for s in saved["summary"] if s["checkpoint"] == "checkpoint-200")
        assert row["reviewed"] == 1
        assert row["counts"]["hallucinated"] == 1

        accurate = {**body, "checkpoint": "checkpoint-1000", "labels": ["accurate"]}
        assert client.post("api/marks", json=accurate, headers={"X-Review-Token": token}).is_success
        summary = client.get("api/summary").json()["summary"]
        assert [s["reviewed"] for s in summary] == [0, 1, 1]
        assert len(client.get("api/marks").json()["marks"]) == 2

    # Durable: the marks are in the run folder and a new server shows them.
    lines = review.marks_path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["note"] == "calls it eczema"
    with running_review(review) as server, httpx.Client(base_url=server.url) as client:
        assert "calls it eczema" in client.get("/").text
    assert [s.reviewed for s in summarize(review, MarkStore(review.marks_path).read())] == [0, 1, 1]


def test_server_refuses_bad_marks(review: ReviewSet) -> None:
    with running_review(review) as server, httpx.Client(base_url=server.url) as client:
        token = page_token(client.get("/").text)
        good = {"checkpoint": "checkpoint-100", "id": "ex0", "reviewer": "ani", "labels": []}
        cases = [
            ({}, good, 403, "bad_token"),
            ({"X-Review-Token": "forged"}, good, 403, "bad_token"),
            ({"X-Review-Token": token}, {**good, "labels": ["great"]}, 400, "bad_mark"),
            ({"X-Review-Token": token}, {**good, "id": "ex4"}, 400, "bad_mark"),
            ({"X-Review-Token": token, "Host": "evil.example:80"}, good, 421, "wrong_host"),
        ]
        for headers, body, status, code in cases:
            answer = client.post("api/marks", json=body, headers=headers)
            assert answer.status_code == status, (headers, body, answer.text)
            assert answer.json()["error"]["code"] == code
        as_form = client.post("api/marks", data={"a": "b"}, headers={"X-Review-Token": token})
        assert as_form.status_code == 415
    assert not review.marks_path.exists()


def test_server_serves_only_the_generations_images(review: ReviewSet, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    with running_review(review) as server, httpx.Client(base_url=server.url) as client:
        image = client.get("image/1")
        assert image.status_code == 200
        assert image.content == review.items[1].image.read_bytes()
        for path in (
            "image/4",
            "image/99",
            "image/-1",
            "image/..%2F..%2Fsecret.txt",
            "image/%2e%2e/%2e%2e/secret.txt",
            "static/page.html",
            "static/..%2Freview.py",
            f"image/{secret}",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert b"not for the browser" not in answer.content


def test_static_html_is_self_contained(review: ReviewSet, tmp_path: Path) -> None:
    from training.review_server import write_static_html

    path, missing = write_static_html(review, tmp_path / "review.html")
    html = path.read_text()
    assert missing == 0
    assert html.count("data:image/jpeg;base64,") == 4
    assert 'src="static/' not in html
    assert "fetch('api" in html
    assert "</script><img" not in html
    assert str(review.items[0].image) not in html  # no local paths needed


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield tab
    context.close()
    assert not errors, f"errors in the page: {errors}"


def cell(page: Any, checkpoint: str, example: str) -> Any:
    return page.locator(f'.cell[data-checkpoint="{checkpoint}"][data-id="{example}"]')


@pytest.mark.browser
def test_review_page_in_chromium(review: ReviewSet, page: Any) -> None:
    from playwright.sync_api import expect

    with running_review(review) as server:
        page.goto(server.url)
        expect(page.locator(".item")).to_have_count(4)
        expect(page.locator(".cell")).to_have_count(12)
        # Model output is shown as text, not markup.
        expect(cell(page, "checkpoint-100", "ex0").locator(".generation")).to_contain_text(
            "<img src=x onerror=alert(1)>"
        )
        first_image = page.locator(".item img").first
        expect(first_image).to_have_attribute("src", "image/0")
        assert page.evaluate("(img) => img.naturalWidth", first_image.element_handle()) == 64

        target = cell(page, "checkpoint-200", "ex1")
        target.locator('input[value="accurate"]').click()  # no reviewer name yet: refused
        expect(target.locator(".status")).to_have_text("Enter your name (Reviewer) first.")
        expect(target.locator('input[value="accurate"]')).not_to_be_checked()

        page.fill("#reviewer", "dr. Ani")
        page.locator("#reviewer").dispatch_event("change")
        target.locator('input[value="accurate"]').check()
        expect(target.locator(".status")).to_have_text("saved")
        target.locator('input[value="hedged"]').check()
        expect(target.locator(".status")).to_have_text("saved")
        target.locator("textarea").fill("good, cautious")
        target.locator("textarea").dispatch_event("change")
        expect(target.locator(".status")).to_have_text("saved")
        other = cell(page, "checkpoint-1000", "ex3")
        other.locator('input[value="unsafe"]').check()
        expect(other.locator(".status")).to_have_text("saved")

        row = page.locator('#summary tr[data-checkpoint="checkpoint-200"]')
        expect(row.locator('[data-label="reviewed"]')).to_have_text("1 / 4")
        expect(row.locator('[data-label="hedged"]')).to_have_text("1 (100%)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "checkpoint-review.png"))

        # Reload: the marks come back from the server.
        page.reload()
        page.fill("#reviewer", "dr. Ani")
        page.locator("#reviewer").dispatch_event("change")
        expect(cell(page, "checkpoint-200", "ex1").locator('input[value="hedged"]')).to_be_checked()
        expect(cell(page, "checkpoint-200", "ex1").locator("textarea")).to_have_value(
            "good, cautious"
        )

    summary = {s.checkpoint: s for s in summarize(review, MarkStore(review.marks_path).read())}
    assert summary["checkpoint-200"].counts["accurate"] == 1
    assert summary["checkpoint-200"].counts["hedged"] == 1
    assert summary["checkpoint-1000"].counts["unsafe"] == 1
    assert summary["checkpoint-100"].reviewed == 0


@pytest.mark.browser
def test_static_page_exports_marks_for_import(review: ReviewSet, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from training.review_server import write_static_html

    path, _ = write_static_html(review, tmp_path / "review.html")
    page.goto(path.as_uri())
    expect(page.locator(".cell")).to_have_count(12)
    assert page.evaluate("() => document.querySelector('.item img').naturalWidth") > 0
    page.fill("#reviewer", "budi")
    page.locator("#reviewer").dispatch_event("change")
    target = cell(page, "checkpoint-100", "ex2")
    target.locator('input[value="wrong_diagnosis"]').check()
    expect(target.locator(".status")).to_contain_text("saved in this browser")
    expect(
        page.locator('#summary tr[data-checkpoint="checkpoint-100"] [data-label="wrong_diagnosis"]')
    ).to_have_text("1 (100%)")
    with page.expect_download() as download:
        page.click("#export")
    exported = tmp_path / "exported.json"
    download.value.save_as(exported)
    assert import_marks(review, exported) == (1, 0)
    summary = {s.checkpoint: s for s in summarize(review, MarkStore(review.marks_path).read())}
    assert summary["checkpoint-100"].counts["wrong_diagnosis"] == 1
    assert summary["checkpoint-100"].reviewers == ("budi",)
