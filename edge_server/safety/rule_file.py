"""The red-flag rule file (``data/red_flags.json``): its pydantic model, JSON schema and loader.

Clinicians edit the rules as JSON; :class:`RedFlagRuleFile` is the single definition of
what such a file may hold, with a description and constraints for every field.
``load_rules`` validates a file through it and turns it into the run-time
:class:`~edge_server.safety.red_flags.RedFlagRule` objects; an invalid file is refused with a
:class:`RuleFileError` that names the file, the rule and the field
(:mod:`edge_server.safety.rule_errors` words the problems). ``rules_json_schema`` is the
model's JSON schema, committed as ``data/red_flags.schema.json`` so that an editor can
check a rule file while it is written (``python -m edge_server.safety.schema`` rewrites
it).

Shape::

    {"version": 1, "rules": [
        {"id": "...", "description": "...", "action": "urgent referral",
         "reason": {"en": "...", "id": "..."},
         "all_of": [clause, {"any_of": [clause, ...]}, ...],
         "age_min_years": 0, "age_max_years": 120}]}

A clause is ``{"any_terms": [...], "fields": [...], "ignore_terms": [...]}``: it matches
when any term occurs in any of the fields, after the ``ignore_terms`` phrases are masked
out of the text (``"mata kaki"``, the ankle, so that ``"mata"``, the eye, does not match
it). An entry of ``all_of`` may also be ``{"any_of": [clause, ...]}``, which matches when
any of its clauses does: it lets a rule search different terms in different fields (a
bare "2 bulan" is a duration in ``duration`` but an age in ``notes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge_server.safety.red_flags import RedFlagClause, RedFlagRule, RuleField
from edge_server.safety.rule_errors import (
    CLAUSE_TAG,
    GROUP_TAG,
    MAX_AGE_YEARS,
    RULE_ID_PATTERN,
    RULES_VERSION,
    RuleFileError,
    RuleProblem,
    describe_problems,
)
from edge_server.safety.terms import MIN_STEM_LETTERS, TERM_SYNTAX, term_regex
from skinspector.core.case_schema import Action, Language
from skinspector.core.resources import resource_path

__all__ = [
    "RedFlagRuleFile",
    "RuleFileError",
    "default_rules_path",
    "load_rules",
    "parse_rule_file",
    "rules_json_schema",
]


def _usable_term(term: str) -> str:
    if term_regex(term) is None:
        raise ValueError(f"bad term {term!r}: {TERM_SYNTAX}")
    return term


Term = Annotated[
    str,
    # Necessary, not sufficient (the validator checks the rest): lets an editor flag a
    # misplaced '*' while the file is typed.
    StringConstraints(pattern=r"^[^*]+\*?$"),
    AfterValidator(_usable_term),
    Field(
        description="Words to find, matched whole-word, case- and accent-insensitively. '#' "
        "stands for any number ('for # months'); a final '*' continues the last word "
        f"('bleed*': bleeds, bleeding), after at least {MIN_STEM_LETTERS} letters.",
        examples=["tahi lalat", "bleed*", "for # months"],
    ),
]

#: Free text that must say something (blank text is refused).
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"\S")]


class ClauseSpec(BaseModel):
    """Matches when any of its terms occurs in any of its fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Clause")

    any_terms: list[Term] = Field(
        min_length=1, description="The clause matches when any of these terms occurs."
    )
    fields: list[RuleField] = Field(
        min_length=1,
        description="Texts to search: the health worker's 'notes', each of the 'symptoms', "
        "the 'body_site', the 'duration', and the model's visible 'findings'.",
    )
    ignore_terms: list[Term] = Field(
        default_factory=list,
        min_length=1,
        description="Phrases masked out of the text before searching, e.g. 'mata kaki' "
        "(ankle) so that the term 'mata' (eye) does not match it. Omit when not needed.",
    )

    def to_clause(self) -> RedFlagClause:
        """The run-time clause (repeated fields searched once)."""
        return RedFlagClause(
            any_terms=tuple(self.any_terms),
            fields=tuple(dict.fromkeys(self.fields)),
            ignore_terms=tuple(self.ignore_terms),
        )


class AnyOfSpec(BaseModel):
    """Matches when any of its clauses does (to search different terms in different fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="AnyOfGroup")

    any_of: list[ClauseSpec] = Field(
        min_length=1, description="Alternative clauses; one matching is enough."
    )


def _all_of_entry_kind(value: Any) -> str:
    """An object with an ``any_of`` key is a group; anything else is read as a clause."""
    if isinstance(value, AnyOfSpec) or (isinstance(value, dict) and "any_of" in value):
        return GROUP_TAG
    return CLAUSE_TAG


AllOfEntry = Annotated[
    Annotated[ClauseSpec, Tag(CLAUSE_TAG)] | Annotated[AnyOfSpec, Tag(GROUP_TAG)],
    Discriminator(_all_of_entry_kind),
]


class ReasonSpec(BaseModel):
    """What the health worker reads when the rule fires, in both languages."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Reason")

    en: Text = Field(description="The reason in English.")
    id: Text = Field(description="The reason in Bahasa Indonesia.")

    def by_language(self) -> dict[Language, str]:
        return {Language.EN: self.en, Language.ID: self.id}


Age = Annotated[int, Field(strict=True, ge=0, le=MAX_AGE_YEARS)]


class RuleSpec(BaseModel):
    """One red-flag rule: fires when the age bounds hold and every entry of all_of matches."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Rule")

    id: Annotated[str, StringConstraints(pattern=RULE_ID_PATTERN)] = Field(
        description="Unique id, recorded with each case the rule fires on: lower-case "
        "letters, digits and '_'.",
        examples=["changing_pigmented_lesion"],
    )
    description: Text = Field(description="What the rule detects, for the people who review it.")
    action: Literal["urgent referral", "routine referral"] = Field(
        Action.URGENT_REFERRAL.value,
        description="The action the rule raises the assessment to (never lowers it).",
    )
    reason: ReasonSpec = Field(description="Shown to the health worker when the rule fires.")
    all_of: list[AllOfEntry] = Field(
        min_length=1,
        description="Every entry must match: a clause, or {'any_of': [clause, ...]}.",
    )
    age_min_years: Age | None = Field(
        None,
        description="Fires only for a known age of at least this many whole years.",
    )
    age_max_years: Age | None = Field(
        None,
        description="Fires only for a known age of at most this many whole years "
        "(0: under one year).",
    )

    @model_validator(mode="after")
    def _ordered_ages(self) -> RuleSpec:
        low, high = self.age_min_years, self.age_max_years
        if low is not None and high is not None and low > high:
            raise ValueError("'age_min_years' exceeds 'age_max_years'")
        return self

    def to_rule(self) -> RedFlagRule:
        """The run-time rule: each entry of ``all_of`` becomes a group of clauses."""
        groups = tuple(
            tuple(c.to_clause() for c in entry.any_of)
            if isinstance(entry, AnyOfSpec)
            else (entry.to_clause(),)
            for entry in self.all_of
        )
        return RedFlagRule(
            id=self.id,
            description=self.description,
            action=Action(self.action),
            reason=self.reason.by_language(),
            all_of=groups,
            age_min_years=self.age_min_years,
            age_max_years=self.age_max_years,
        )


class RedFlagRuleFile(BaseModel):
    """Clinician-reviewed rules that raise the action of an assessment (never lower it)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="SKINspectoR red-flag rules",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    schema_ref: str | None = Field(
        None,
        alias="$schema",
        title="Schema link",
        description="Optional link to this schema, for editors that check JSON as it is typed.",
    )
    version: Literal[1] = Field(
        RULES_VERSION, description="Format version; this build reads version 1."
    )
    rules: list[RuleSpec] = Field(description="The rules, evaluated in this order.")

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        first: dict[str, int] = {}
        for number, rule in enumerate(rules, start=1):
            if rule.id in first:
                raise PydanticCustomError(
                    "duplicate_rule_id",
                    "rule id '{rule_id}' is used by rules #{first} and #{second}",
                    {"rule_id": rule.id, "first": first[rule.id], "second": number},
                )
            first[rule.id] = number
        return rules

    def to_rules(self) -> list[RedFlagRule]:
        """The run-time rules, in file order."""
        return [rule.to_rule() for rule in self.rules]


def rules_json_schema() -> dict[str, Any]:
    """The JSON schema of a rule file (committed as ``data/red_flags.schema.json``)."""
    return RedFlagRuleFile.model_json_schema()


def default_rules_path() -> Path:
    """The bundled rule file, ``edge_server/data/red_flags.json``."""
    return resource_path("edge_server", "data", "red_flags.json")


def parse_rule_file(document: object, origin: str) -> RedFlagRuleFile:
    """Validate an already-decoded rule file; ``origin`` names it in a :class:`RuleFileError`."""
    try:
        return RedFlagRuleFile.model_validate(document)
    except ValidationError as exc:
        raise RuleFileError(origin, describe_problems(exc.errors(), document)) from exc


def load_rules(path: Path | None = None) -> list[RedFlagRule]:
    """Load and validate a rules file (default: the bundled ``data/red_flags.json``).

    Raises :class:`RuleFileError` (a ``ValueError``) naming the file and the rule id (or
    its position when the id itself is bad) for: an unknown key, an empty or missing
    ``all_of``/``any_terms``/``fields``, an unknown field, a bad action (only "urgent
    referral", the default, and "routine referral"), a ``reason`` without both "en" and
    "id", a bad term, a bad age bound, or a duplicate id; also for a file that is not JSON
    or has another ``version``. ``OSError`` if the file cannot be read.
    """
    source = default_rules_path() if path is None else path
    content = source.read_text(encoding="utf-8")
    try:
        document = json.loads(content)
    except json.JSONDecodeError as exc:
        raise RuleFileError(str(source), [RuleProblem(f"not valid JSON: {exc}")]) from exc
    return parse_rule_file(document, str(source)).to_rules()
