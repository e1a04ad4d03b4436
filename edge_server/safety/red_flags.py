"""Red-flag rules at run time: which rules fire for a case, and how they raise its action.

``evaluate_red_flags`` runs clinician-reviewable rules (loaded and validated by
:func:`edge_server.safety.rule_file.load_rules` from ``data/red_flags.json``) over the
clinical context and the model's visible-findings text; ``apply_safety`` then raises the
assessment's action to the most urgent one found and appends each rule's reason to
``red_flags``. Rules can only raise urgency, never lower it. Both are deterministic and
do not depend on the vision-language model. How a term matches text is described in
:mod:`edge_server.safety.terms`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from edge_server.safety.terms import MASK, compile_terms, normalise_text
from skinspector.core.case_schema import Action, Assessment, ClinicalContext, Language

__all__ = [
    "RULE_FIELDS",
    "RedFlagClause",
    "RedFlagRule",
    "RuleField",
    "TriggeredFlag",
    "apply_safety",
    "evaluate_red_flags",
]

#: A text a clause may search: a ClinicalContext field or the model's findings text.
RuleField = Literal["notes", "symptoms", "body_site", "duration", "findings"]

#: Every :data:`RuleField`.
RULE_FIELDS = frozenset(get_args(RuleField))


@dataclass(frozen=True)
class RedFlagClause:
    """Matches when any term occurs in any of the fields.

    Before searching, every occurrence of an ``ignore_terms`` phrase is masked out of the
    text: with ignore term "mata kaki" (ankle), "mata" (eye) no longer matches
    "lepuh di mata kaki", but still matches "lepuh di mata kaki dan mata".
    """

    any_terms: tuple[str, ...]
    fields: tuple[str, ...]
    ignore_terms: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    ignore_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_terms(self.any_terms))
        ignore = compile_terms(self.ignore_terms) if self.ignore_terms else None
        object.__setattr__(self, "ignore_pattern", ignore)

    def matches(self, texts: Mapping[str, Sequence[str]]) -> bool:
        """``texts`` maps a field to its normalised texts (one per symptom)."""
        for name in self.fields:
            for text in texts.get(name, ()):
                masked = (
                    text if self.ignore_pattern is None else self.ignore_pattern.sub(MASK, text)
                )
                if self.pattern.search(masked):
                    return True
        return False


@dataclass(frozen=True)
class RedFlagRule:
    """One rule: fires when the age bounds hold and every entry of ``all_of`` matches.

    Each entry of ``all_of`` is a group of clauses that matches when any of them does (in
    the JSON, a plain clause is a group of one; ``{"any_of": [clause, ...]}`` a larger
    group, used to search different terms in different fields). An age bound only holds
    for a known age: with ``age_years`` unset, a rule with ``age_min_years`` or
    ``age_max_years`` does not fire.
    """

    id: str
    description: str
    action: Action
    reason: dict[Language, str]
    all_of: tuple[tuple[RedFlagClause, ...], ...]
    age_min_years: int | None = None
    age_max_years: int | None = None

    def age_allows(self, age_years: int | None) -> bool:
        """True when the rule has no age bound or ``age_years`` is within them."""
        if self.age_min_years is None and self.age_max_years is None:
            return True
        if age_years is None:
            return False
        if self.age_min_years is not None and age_years < self.age_min_years:
            return False
        return self.age_max_years is None or age_years <= self.age_max_years

    def fires(self, texts: Mapping[str, Sequence[str]], age_years: int | None) -> bool:
        """``texts``: normalised texts per field, as ``evaluate_red_flags`` builds them."""
        return self.age_allows(age_years) and all(
            any(clause.matches(texts) for clause in group) for group in self.all_of
        )


@dataclass(frozen=True)
class TriggeredFlag:
    """A rule that fired, with its reason in the case's language."""

    rule_id: str
    action: Action
    reason: str


def _field_texts(context: ClinicalContext, findings: str) -> dict[str, tuple[str, ...]]:
    """Normalised texts per field; each symptom stays separate so that a multi-word term
    never matches across two symptoms."""

    def texts(values: Iterable[str | None]) -> tuple[str, ...]:
        return tuple(filter(None, (normalise_text(v) for v in values if v)))

    return {
        "notes": texts([context.notes]),
        "symptoms": texts(context.symptoms),
        "body_site": texts([context.body_site]),
        "duration": texts([context.duration]),
        "findings": texts([findings]),
    }


def evaluate_red_flags(
    rules: Sequence[RedFlagRule], context: ClinicalContext, findings: str = ""
) -> list[TriggeredFlag]:
    """The rules that fire for this case, in rule order, reasons in ``context.language``.

    ``findings`` is the model's pass-1 visible-findings text (may be empty).
    """
    texts = _field_texts(context, findings)
    return [
        TriggeredFlag(rule_id=rule.id, action=rule.action, reason=rule.reason[context.language])
        for rule in rules
        if rule.fires(texts, context.age_years)
    ]


def apply_safety(assessment: Assessment, flags: Sequence[TriggeredFlag]) -> Assessment:
    """A copy of ``assessment`` with the red flags applied; the input is not changed.

    action = the most urgent (highest ``Action.rank``) of the model's action and every
    flag's action, so it is never lowered. Each flag's reason is appended to ``red_flags``
    unless that exact text is already there. ``action_from_model`` is left as it was: it
    describes the model's output (``raw_text`` keeps what the model said); callers record
    the fired rule ids themselves.
    """
    action = max((assessment.action, *(flag.action for flag in flags)), key=lambda a: a.rank)
    red_flags = list(assessment.red_flags)
    for flag in flags:
        if flag.reason not in red_flags:
            red_flags.append(flag.reason)
    return assessment.model_copy(update={"action": action, "red_flags": red_flags}, deep=True)
