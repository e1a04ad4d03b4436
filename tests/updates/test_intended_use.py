"""The intended-use line of the bundle that answered, in the review UI (the phone app's
line comes from /api/v1/info, checked in test_end_to_end)."""

from __future__ import annotations

from pathlib import Path

from tests.review_hub.hub_harness import case_document, logged_in, queue_keys, running_hub


def test_review_page_shows_the_bundles_intended_use(tmp_path: Path) -> None:
    line = "Decision support for trained health workers; <not> a diagnosis."
    with running_hub(tmp_path / "hub") as hub:
        hub.add_reviewer()
        clinic = hub.enrol("Puskesmas Alor")
        with_line = case_document(notes="first")
        with_line["result"]["audit"].update({"bundle_version": "1.4.0", "intended_use": line})
        without = case_document(notes="second")  # an older box: no line, nothing shown
        for document in (with_line, without):
            assert hub.send_case(clinic, document).status_code == 200
        with logged_in(hub) as browser:
            pages = [browser.get(f"/review/cases/{key}").text for key in queue_keys(browser)]
    shown = [page for page in pages if "intended use:" in page]
    assert len(shown) == 1
    assert "Model bundle 1.4.0, intended use: Decision support for trained" in shown[0]
    assert "&lt;not&gt; a diagnosis." in shown[0]
    assert "<not>" not in shown[0]
