"""What the review pages show of a case document, as plain data for the templates.

A case document is the clinic's JSON, validated only loosely (:mod:`review_hub.payloads`):
every field read here may be missing or of any JSON type, so each reader checks types and
turns values into text. The templates escape that text when they output it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from review_hub.payloads import ai_action

__all__ = [
    "AiResult",
    "Assessment",
    "Condition",
    "Fact",
    "Reference",
    "ai_result",
    "cited_references",
    "context_facts",
    "patient_summary",
    "red_flag_count",
    "strings",
]

#: The clinic's context fields shown one per line, in this order.
_CONTEXT_LABELS = (
    ("age_years", "Age (years)"),
    ("sex", "Sex"),
    ("body_site", "Body site"),
    ("duration", "Duration"),
    ("language", "Language"),
)


@dataclass(frozen=True, slots=True)
class Fact:
    """One labelled value; ``text``: free text (line breaks kept on the page)."""

    label: str
    value: str
    text: bool = False


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    likelihood: str  # "" when the AI gave none


@dataclass(frozen=True, slots=True)
class Assessment:
    """The AI's structured assessment."""

    action: str | None  # one of payloads.URGENCIES, or None
    red_flags: list[str]
    rules: list[str]  # safety rules that fired
    findings: list[str]
    conditions: list[Condition]
    disclaimer: str | None


@dataclass(frozen=True, slots=True)
class AiResult:
    """The AI result sent with a case (there may be no assessment in it)."""

    demo: bool  # from a demo model (random weights)
    demo_warning: str
    bundle_version: str
    intended_use: str | None
    assessment: Assessment | None
    disclaimer: str | None  # the result's own, shown when there is no assessment


@dataclass(frozen=True, slots=True)
class Reference:
    """A knowledge-base passage the assessment cited."""

    number: str
    title: str
    where: str  # source and page, "" when unknown
    text: str


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def strings(value: Any) -> list[str]:
    """The non-empty scalar items of a JSON list, as text (anything else: ``[]``)."""
    if not isinstance(value, list):
        return []
    return [str(item) for item in value if isinstance(item, (str, int, float)) and str(item)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _context(document: dict[str, Any]) -> dict[str, Any]:
    return _dict(document.get("context"))


def patient_summary(document: dict[str, Any]) -> str:
    """Age, sex and body site in one short line (the queue's 'Patient, site')."""
    context = _context(document)
    parts = []
    if isinstance(context.get("age_years"), int):
        parts.append(f"{context['age_years']} y")
    for key in ("sex", "body_site"):
        if isinstance(context.get(key), str):
            parts.append(context[key])
    return ", ".join(parts)


def red_flag_count(document: dict[str, Any]) -> int:
    """How many red flags the AI assessment raised."""
    assessment = _dict(_dict(document.get("result")).get("assessment"))
    return len(strings(assessment.get("red_flags")))


def context_facts(document: dict[str, Any]) -> list[Fact]:
    """The clinic's notes on the patient, in display order."""
    context = _context(document)
    facts = [
        Fact(label, str(context[key]))
        for key, label in _CONTEXT_LABELS
        if context.get(key) not in (None, "")
    ]
    symptoms = strings(context.get("symptoms"))
    if symptoms:
        facts.append(Fact("Symptoms", ", ".join(symptoms)))
    notes = context.get("notes")
    if isinstance(notes, str) and notes.strip():
        facts.append(Fact("Notes", notes, text=True))
    return facts


def _conditions(value: Any) -> list[Condition]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and item.get("name"):
            likelihood = item.get("likelihood")
            out.append(Condition(str(item["name"]), str(likelihood) if likelihood else ""))
        elif isinstance(item, str):
            out.append(Condition(item, ""))
    return out


def _assessment(document: dict[str, Any], result: dict[str, Any]) -> Assessment | None:
    assessment = result.get("assessment")
    if not isinstance(assessment, dict):
        return None
    disclaimer = assessment.get("disclaimer")
    return Assessment(
        action=ai_action(document),
        red_flags=strings(assessment.get("red_flags")),
        rules=strings(result.get("red_flag_rules")),
        findings=strings(assessment.get("findings")),
        conditions=_conditions(assessment.get("likely_conditions")),
        disclaimer=disclaimer if isinstance(disclaimer, str) else None,
    )


def ai_result(document: dict[str, Any]) -> AiResult | None:
    """The AI result of a case, or None when the clinic sent none."""
    result = document.get("result")
    if not isinstance(result, dict):
        return None
    audit = result.get("audit")
    warning = result.get("demo_warning")
    intended_use = audit.get("intended_use") if isinstance(audit, dict) else None
    disclaimer = result.get("disclaimer")
    return AiResult(
        demo=bool(warning or (isinstance(audit, dict) and audit.get("demo"))),
        demo_warning=warning if isinstance(warning, str) else "",
        bundle_version=_text(audit.get("bundle_version")) if isinstance(audit, dict) else "",
        intended_use=intended_use if isinstance(intended_use, str) else None,
        assessment=_assessment(document, result),
        disclaimer=disclaimer if isinstance(disclaimer, str) else None,
    )


def cited_references(document: dict[str, Any]) -> list[Reference] | None:
    """The references the assessment cited, in order; None when the result lists none."""
    references = _dict(document.get("result")).get("references")
    if not isinstance(references, list):
        return None
    cited = [ref for ref in references if isinstance(ref, dict) and ref.get("cited") is True]
    return [
        Reference(
            number=_text(ref.get("number", "?")),
            title=" — ".join(str(part) for part in (ref.get("title"), ref.get("heading")) if part)
            or "Untitled",
            where=", ".join(
                part
                for part in (
                    str(ref["source"]) if ref.get("source") else "",
                    f"p. {ref['page']}" if ref.get("page") else "",
                )
                if part
            ),
            text=_text(ref.get("text", "")),
        )
        for ref in cited
    ]
