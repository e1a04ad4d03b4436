"""The review UI's templates and the page data behind them, without a running hub."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import aiohttp_jinja2
import jinja2
import pytest
from aiohttp import web

import review_hub.ui
from review_hub.ui import documents
from review_hub.ui.pages import setup_templates

TEMPLATES = resources.files("clients").joinpath("review")


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    app = web.Application()
    setup_templates(app)
    return aiohttp_jinja2.get_env(app)


def test_every_template_compiles(env: jinja2.Environment) -> None:
    names = sorted(p.name for p in TEMPLATES.iterdir() if p.name.endswith(".html"))
    assert {"layout.html", "login.html", "queue.html", "case.html", "message.html"} <= set(names)
    for name in names:
        env.get_template(name)


def test_pages_extend_the_layout() -> None:
    for name in ("login.html", "queue.html", "case.html", "message.html"):
        assert '{% extends "layout.html" %}' in TEMPLATES.joinpath(name).read_text()


def test_output_is_escaped_with_the_hubs_entity_forms(env: jinja2.Environment) -> None:
    page = env.get_template("message.html").render(
        heading="<b>'x'</b>", message='"quoted" & <script>', session=None
    )
    assert "<title>&lt;b&gt;&#x27;x&#x27;&lt;/b&gt; · SKINspectoR review</title>" in page
    assert "<p>&quot;quoted&quot; &amp; &lt;script&gt;</p>" in page
    assert "<script" not in page
    assert 'class="who"' not in page  # no session: no account box


def test_none_renders_as_nothing_and_missing_values_fail(env: jinja2.Environment) -> None:
    page = env.get_template("message.html").render(heading=None, message="m", session=None)
    assert "<h1></h1>" in page
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("message.html").render(heading="h", session=None)


def test_views_hold_no_markup() -> None:
    """All markup lives in clients/review; the Python side passes plain data."""
    tag = re.compile(r"<(?:p|div|span|ul|li|form|input|a|h\d|dl|dt|dd|tr|td|details|img)[\s>]")
    folder = Path(str(resources.files(review_hub.ui)))
    offenders = [p.name for p in sorted(folder.glob("*.py")) if tag.search(p.read_text())]
    assert offenders == []


def test_context_facts_skip_empty_values_and_keep_notes_as_text() -> None:
    document = {
        "context": {
            "age_years": 0,
            "sex": None,
            "body_site": "",
            "symptoms": ["itch", "", None, 3],
            "notes": "line one\nline two",
        }
    }
    facts = documents.context_facts(document)
    assert [(f.label, f.value, f.text) for f in facts] == [
        ("Age (years)", "0", False),
        ("Symptoms", "itch, 3", False),
        ("Notes", "line one\nline two", True),
    ]
    assert documents.context_facts({"context": "not an object"}) == []
    summary = {"context": {"age_years": 54, "sex": "female", "body_site": "left forearm"}}
    assert documents.patient_summary(summary) == "54 y, female, left forearm"
    assert documents.patient_summary({}) == ""


def test_only_cited_references_are_listed() -> None:
    result = {
        "references": [
            {"cited": True, "number": 2, "title": "T", "heading": "H", "source": "s.md", "page": 4},
            {"cited": False, "number": 3, "title": "Not cited"},
            {"cited": "yes", "number": 4, "title": "Not strictly cited"},
            {"cited": True},
        ]
    }
    refs = documents.cited_references({"result": result})
    assert refs is not None
    assert [(r.number, r.title, r.where, r.text) for r in refs] == [
        ("2", "T — H", "s.md, p. 4", ""),
        ("?", "Untitled", "", ""),
    ]
    assert documents.cited_references({"result": {"references": "none"}}) is None
    assert documents.cited_references({"result": {"references": []}}) == []


def test_ai_result_without_assessment_keeps_status_and_disclaimer() -> None:
    document = {
        "status": "failed",
        "result": {
            "assessment": None,
            "disclaimer": "Not a diagnosis.",
            "audit": {"demo": True, "bundle_version": 3, "intended_use": "Support only."},
        },
    }
    ai = documents.ai_result(document)
    assert ai is not None
    assert ai.assessment is None
    assert (ai.demo, ai.demo_warning, ai.bundle_version) == (True, "", "3")
    assert (ai.intended_use, ai.disclaimer) == ("Support only.", "Not a diagnosis.")
    assert documents.ai_result({"result": None}) is None
