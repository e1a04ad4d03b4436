"""Synthesized pass-2 targets: the five-section assessment built from a SkinCAP row and the
knowledge base, so that tuning the findings prompt does not untrain the assessment.

SkinCAP has captions and a disease label, not assessments. For the optional second task
(``tasks.assessment_ratio``) a target is assembled from:

- ``## Visible findings``: the caption;
- ``## Most likely conditions``: the labelled disease, named by its knowledge-base entry's
  title with the label's synonyms from that entry;
- ``## Red flags``: the entry's ``## Red flags`` bullets;
- ``## Recommended action``: the level the entry's ``## When to refer`` gives the condition
  itself: urgent referral when its urgent bullet covers every (or all) suspected cases
  (melanoma, pemphigus), otherwise routine referral, the project's safe default (the urgent
  bullets of other entries list red flags, which an unlabelled photo does not show);
- ``## Disclaimer``: the project's own disclaimer.

These targets are SYNTHESIZED, pending clinical review (the model card says so): they teach
the answer's structure and the knowledge base's referral rules, not a dermatologist's
judgement. Rows whose label resolves to no knowledge-base entry get no target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from skinspector.core.case_schema import Action, Language
from skinspector.core.prompt import DISCLAIMERS, SECTION_HEADINGS
from training.diagnosis import STARTER_KB, DiagnosisMatcher

__all__ = ["SYNTHESIZED_NOTE", "AssessmentTargets", "KbCondition", "read_kb_condition"]

SYNTHESIZED_NOTE = (
    "Pass-2 (assessment) training targets are synthesized from SkinCAP captions and labels "
    "and the knowledge base's red flags and referral levels; they are pending clinical review."
)

_SECTION = re.compile(r"^## (?P<title>.+?)\s*$", re.MULTILINE)
_BULLET = re.compile(r"^\s*-\s+(?P<text>.+?)\s*$", re.MULTILINE)
_URGENT_BULLET = re.compile(r"^urgent referral:\s*(?P<rest>.*)$", re.IGNORECASE)
_ALWAYS_URGENT = re.compile(r"^(every|all)\s+suspected\b", re.IGNORECASE)
_ACTION_TEXT = {
    Action.URGENT_REFERRAL: "Urgent referral.",
    Action.ROUTINE_REFERRAL: "Routine referral.",
    Action.SELF_CARE: "Self-care.",
}


@dataclass(frozen=True, slots=True)
class KbCondition:
    title: str
    referral: Action
    red_flags: tuple[str, ...]


def _sections(text: str) -> dict[str, str]:
    found = list(_SECTION.finditer(text))
    return {
        match.group("title").strip().lower(): text[
            match.end() : found[i + 1].start() if i + 1 < len(found) else len(text)
        ]
        for i, match in enumerate(found)
    }


def read_kb_condition(path: Path) -> KbCondition | None:
    """The title, referral level and red flags of one knowledge-base entry (None when the
    entry lacks a title or a ``When to refer`` section)."""
    text = path.read_text(encoding="utf-8")
    title = re.search(r"^# (?P<title>.+?)\s*$", text, re.MULTILINE)
    sections = _sections(text)
    refer = sections.get("when to refer")
    if title is None or refer is None:
        return None
    level = Action.ROUTINE_REFERRAL
    for bullet in _BULLET.finditer(refer):
        urgent = _URGENT_BULLET.match(bullet.group("text"))
        if urgent and _ALWAYS_URGENT.match(urgent.group("rest")):
            level = Action.URGENT_REFERRAL
    flags = tuple(b.group("text") for b in _BULLET.finditer(sections.get("red flags", "")))
    return KbCondition(title.group("title"), level, flags)


class AssessmentTargets:
    """Builds the synthesized assessment answer for a (caption, disease label) pair."""

    def __init__(self, kb_dir: Path = STARTER_KB) -> None:
        self.kb_dir = kb_dir
        self.matcher = DiagnosisMatcher.from_kb(kb_dir)
        self._conditions: dict[str, KbCondition | None] = {}

    def condition(self, label: str) -> KbCondition | None:
        entries = self.matcher.entries_for(label)
        if len(entries) != 1 or not entries[0].source:
            return None
        source = entries[0].source
        if source not in self._conditions:
            self._conditions[source] = read_kb_condition(self.kb_dir / source)
        return self._conditions[source]

    def target(self, caption: str, disease: str | None) -> str | None:
        """The five-section answer, or None when the label has no knowledge-base entry."""
        if not disease:
            return None
        found = self.condition(disease)
        if found is None:
            return None
        names = [n for n in self.matcher.names_for(disease) if n.lower() != found.title.lower()]
        also = f" (also called {', '.join(names[:3])})" if names else ""
        flags = [f"- {flag}" for flag in found.red_flags] or ["- None seen."]
        findings, conditions, red_flags, action, disclaimer = SECTION_HEADINGS
        return "\n".join(
            [
                f"## {findings}",
                f"- {caption.strip()}",
                f"## {conditions}",
                f"- {found.title}{also} (moderate likelihood)",
                f"## {red_flags}",
                *flags,
                f"## {action}",
                _ACTION_TEXT[found.referral],
                f"## {disclaimer}",
                DISCLAIMERS[Language.EN],
            ]
        )
