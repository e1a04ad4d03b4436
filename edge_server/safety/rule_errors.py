"""Why a red-flag rule file was refused, in words a clinician editing it can act on.

:class:`~edge_server.safety.rule_file.RedFlagRuleFile` (pydantic) does the validating;
this module turns its errors into :class:`RuleFileError`, whose message names the file,
the rule (by id, or by position when the id itself is bad), where in the rule (``clause
#2, alternative #1``) and what is wrong, e.g.::

    red-flag rule 'zoster_near_eye' in /srv/rules.json, clause #2: unknown field 'site';
    use ['body_site', 'duration', 'findings', 'notes', 'symptoms']

Several problems are listed one per line under a ``red-flag rules <file>: N problems``
header. The constants shared with the model live here, so that the wording and the
model cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic_core import ErrorDetails

from edge_server.safety.red_flags import RULE_FIELDS
from edge_server.safety.terms import TERM_SYNTAX

__all__ = [
    "CLAUSE_TAG",
    "GROUP_TAG",
    "MAX_AGE_YEARS",
    "RULES_VERSION",
    "RULE_ID_PATTERN",
    "RuleFileError",
    "RuleProblem",
    "describe_problems",
]

#: The rule file format this build reads.
RULES_VERSION: Final = 1
#: A rule id: lower-case ASCII letters, digits and underscores.
RULE_ID_PATTERN = r"^[a-z0-9_]+$"
#: Largest age bound, in whole years.
MAX_AGE_YEARS = 120
#: Discriminator tags of an ``all_of`` entry (they appear in pydantic's error locations).
CLAUSE_TAG = "clause"
GROUP_TAG = "group"

_RULE_ID = re.compile(RULE_ID_PATTERN)
_FIELDS = sorted(RULE_FIELDS)
_ACTIONS = ["routine referral", "urgent referral"]
_RULE_KEYS = "id, description, action, reason, all_of, age_min_years, age_max_years"
_LANGUAGES = {"en": "English", "id": "Indonesian"}
_REASON = "'reason' must be an object with exactly the keys 'en' and 'id'"
_ROOT = "expected an object with a 'rules' list"

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with a rule file.

    ``rule`` is ``"rule 'some_id'"`` or ``"rule #3"`` (None for the file as a whole);
    ``within`` the place inside the rule, e.g. ``"clause #2, alternative #1"``.
    """

    message: str
    rule: str | None = None
    within: str | None = None

    def where(self) -> str:
        return ", ".join(part for part in (self.rule, self.within) if part) or "file"


class RuleFileError(ValueError):
    """A red-flag rule file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, origin: str, problems: Sequence[RuleProblem]) -> None:
        self.origin = origin
        self.problems = tuple(problems)
        super().__init__(self._text())

    def _text(self) -> str:
        if len(self.problems) == 1:
            (problem,) = self.problems
            head = (
                f"red-flag {problem.rule} in {self.origin}"
                if problem.rule
                else f"red-flag rules {self.origin}"
            )
            within = f", {problem.within}" if problem.within else ""
            return f"{head}{within}: {problem.message}"
        lines = [f"red-flag rules {self.origin}: {len(self.problems)} problems"]
        lines += [f"  {problem.where()}: {problem.message}" for problem in self.problems]
        return "\n".join(lines)


def _rule_label(document: object, index: int) -> str:
    """``rule 'id'`` when the rule has a usable id, else its 1-based position."""
    rules = document.get("rules") if isinstance(document, dict) else None
    raw = rules[index] if isinstance(rules, list) and 0 <= index < len(rules) else None
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(rule_id, str) and _RULE_ID.fullmatch(rule_id):
        return f"rule {rule_id!r}"
    return f"rule #{index + 1}"


@dataclass(frozen=True)
class _Place:
    scope: str  # "file", "rule", "clause" or "group"
    rest: Loc  # the error location inside that scope's object
    rule: str | None = None
    within: str | None = None


def _place(loc: Loc, document: object) -> _Place:
    """Split a pydantic location into the rule, the clause path and the rest."""
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int):
        return _Place("file", loc)
    rule, rest = _rule_label(document, loc[1]), loc[2:]
    if len(rest) < 3 or rest[0] != "all_of" or not isinstance(rest[1], int):
        return _Place("rule", rest, rule)
    steps, tag, rest = [f"clause #{rest[1] + 1}"], rest[2], rest[3:]
    if tag != GROUP_TAG:
        return _Place("clause", rest, rule, steps[0])
    if len(rest) >= 2 and rest[0] == "any_of" and isinstance(rest[1], int):
        steps.append(f"alternative #{rest[1] + 1}")
        return _Place("clause", rest[2:], rule, ", ".join(steps))  # list[ClauseSpec]: no tag
    return _Place("group", rest, rule, steps[0])


def _unknown_keys(scope: str, rest: Loc, keys: list[str]) -> str:
    if scope == "clause":
        return (
            f"unknown clause key(s) {keys}; a clause takes 'any_terms', 'fields' and 'ignore_terms'"
        )
    if scope == "group":
        return f"an 'any_of' group takes no other keys (found {keys})"
    if scope == "rule" and rest == ("reason",):
        return f"{_REASON}: unknown key(s) {keys}"
    if scope == "rule":
        return f"unknown key(s) {keys}; a rule takes {_RULE_KEYS}"
    return f"unknown top-level key(s) {keys}; a rule file holds '$schema', 'version', 'rules'"


def _file_message(rest: Loc, error: ErrorDetails) -> str | None:
    if rest in {(), ("rules",)}:
        return _ROOT
    if rest == ("version",):
        return f"unsupported version {error['input']!r} (this build reads version {RULES_VERSION})"
    if rest == ("$schema",):
        return "'$schema' must be a string (a link to the rule file schema)"
    return None


def _rule_message(rest: Loc, error: ErrorDetails) -> str | None:
    kind = error["type"]
    if rest == ():
        if kind == "value_error":
            return str(error.get("ctx", {}).get("error", error["msg"]))
        return "a rule must be a JSON object"
    name = ".".join(str(part) for part in rest)
    if rest == ("id",):
        return "'id' must be a non-empty string of a-z, 0-9 and '_'"
    if rest == ("description",):
        return "'description' must be a non-empty string"
    if rest == ("action",):
        return f"bad action {error['input']!r}; use one of {_ACTIONS}"
    if rest == ("reason",):
        return _REASON
    if len(rest) == 2 and rest[0] == "reason" and rest[1] in _LANGUAGES:
        language = _LANGUAGES[str(rest[1])]
        if kind == "missing":
            return f"{_REASON}: the {language} text {name!r} is missing"
        return f"{name!r} must be a non-empty string (the {language} text)"
    if rest == ("all_of",):
        return "'all_of' must be a non-empty list of clauses"
    if rest in {("age_min_years",), ("age_max_years",)}:
        return f"{name!r} must be a whole number of years from 0 to {MAX_AGE_YEARS}"
    return None


def _clause_message(rest: Loc, error: ErrorDetails) -> str | None:
    if rest == ():
        return "a clause must be an object with 'any_terms' and 'fields'"
    name = str(rest[0])
    if name in {"any_terms", "ignore_terms"}:
        if len(rest) == 1:
            return f"{name!r} must be a non-empty list of terms"
        return f"bad term {error['input']!r} in {name!r}: {TERM_SYNTAX}"
    if name == "fields":
        if len(rest) == 1:
            return f"'fields' must be a non-empty list among {_FIELDS}"
        return f"unknown field {error['input']!r}; use {_FIELDS}"
    return None


def _group_message(rest: Loc, error: ErrorDetails) -> str | None:
    if rest == ("any_of",):
        return "'any_of' must be a non-empty list of clauses"
    return None


_MESSAGES = {
    "file": _file_message,
    "rule": _rule_message,
    "clause": _clause_message,
    "group": _group_message,
}


def _duplicate(error: ErrorDetails) -> RuleProblem:
    ctx: dict[str, Any] = error.get("ctx", {})
    return RuleProblem(
        f"duplicate id (rule #{ctx['first']} already uses it)", rule=f"rule {ctx['rule_id']!r}"
    )


def describe_problems(errors: Sequence[ErrorDetails], document: object) -> list[RuleProblem]:
    """One :class:`RuleProblem` per pydantic error, in file order.

    The unknown keys of one object make one problem; a wrong ``version`` hides every other
    error (a file in another format would only add noise).
    """
    wrong_version = [e for e in errors if tuple(e["loc"]) == ("version",)]
    if wrong_version:
        errors = wrong_version
    extras: dict[Loc, list[str]] = {}
    for error in errors:
        if error["type"] == "extra_forbidden":
            extras.setdefault(tuple(error["loc"][:-1]), []).append(str(error["loc"][-1]))
    problems: list[RuleProblem] = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "duplicate_rule_id":
            problems.append(_duplicate(error))
            continue
        if error["type"] == "extra_forbidden":
            keys = extras.pop(loc[:-1], None)
            if keys is None:  # already reported with the first unknown key of its object
                continue
            place = _place(loc[:-1], document)
            message: str | None = _unknown_keys(place.scope, place.rest, keys)
        else:
            place = _place(loc, document)
            message = _MESSAGES[place.scope](place.rest, error)
        if message is None:
            field = ".".join(str(part) for part in place.rest) or "value"
            message = f"{field}: {error['msg']}"
        problems.append(RuleProblem(message, place.rule, place.within))
    return problems
