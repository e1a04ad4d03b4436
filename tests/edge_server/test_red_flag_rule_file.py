"""The red-flag rule file model: the committed JSON schema and clear refusals of bad files.

How the bundled rules match cases is tested in ``test_safety.py``; this file tests what
clinicians editing a rule file see: the schema their editor uses, and the error that names
the file, the rule and the field when the box refuses their file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_server.safety.rule_errors import RuleFileError
from edge_server.safety.rule_file import (
    RedFlagRuleFile,
    default_rules_path,
    load_rules,
    parse_rule_file,
    rules_json_schema,
)
from edge_server.safety.schema import committed_schema_path, main, schema_text
from skinspector.core.case_schema import Action, Language
from skinspector.core.resources import resource_path


def _rule(rule_id: str = "test_rule", **overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "description": "A test rule.",
        "reason": {"en": "English reason.", "id": "Alasan bahasa Indonesia."},
        "all_of": [{"any_terms": ["fever"], "fields": ["notes"]}],
    }
    rule.update(overrides)
    return rule


def _without(key: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != key}


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "my_rules.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _refusal(tmp_path: Path, document: object) -> RuleFileError:
    path = _write(tmp_path, document)
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)
    assert str(path) in str(caught.value)  # every refusal names the file
    return caught.value


# --------------------------------------------------------------------------------------
# The committed JSON schema
# --------------------------------------------------------------------------------------


def test_committed_schema_is_the_generated_one() -> None:
    committed = committed_schema_path()
    assert committed == resource_path("edge_server", "data", "red_flags.schema.json")
    text = committed.read_text(encoding="utf-8")
    assert json.loads(text) == rules_json_schema() == RedFlagRuleFile.model_json_schema()
    assert text == schema_text(), "stale schema: run python -m edge_server.safety.schema"


def test_schema_describes_every_field_for_clinicians() -> None:
    schema = rules_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        assert definition.get("description"), name
        assert definition["additionalProperties"] is False, name
        for field, spec in definition["properties"].items():
            assert spec.get("description"), f"{name}.{field}"
    rule = schema["$defs"]["RuleSpec"]
    assert set(rule["required"]) == {"id", "description", "reason", "all_of"}
    assert rule["properties"]["action"]["enum"] == ["urgent referral", "routine referral"]
    assert set(schema["$defs"]["ReasonSpec"]["required"]) == {"en", "id"}
    clause = schema["$defs"]["ClauseSpec"]["properties"]
    assert set(clause["fields"]["items"]["enum"]) == {
        "notes",
        "symptoms",
        "body_site",
        "duration",
        "findings",
    }


def test_bundled_rules_link_to_the_schema_next_to_them() -> None:
    bundled = json.loads(default_rules_path().read_text(encoding="utf-8"))
    assert bundled["$schema"] == "./red_flags.schema.json"
    assert (default_rules_path().parent / bundled["$schema"]).resolve() == committed_schema_path()


def test_schema_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema.json"
    assert main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == schema_text()
    assert main(["--check", str(out)]) == 0
    out.write_text("{}\n", encoding="utf-8")
    assert main(["--check", str(out)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["--check"]) == 0  # the committed schema


def _jsonschema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(rules_json_schema())


def test_bundled_rules_are_valid_under_the_schema() -> None:
    validator = _jsonschema_validator()
    bundled = json.loads(default_rules_path().read_text(encoding="utf-8"))
    assert list(validator.iter_errors(bundled)) == []


@pytest.mark.parametrize(
    "rule",
    [
        _without("description", _rule()),
        _without("reason", _rule()),
        _rule(reason={"en": "English only."}),
        _rule(reason={"id": "Hanya bahasa Indonesia."}),
        _rule(reason={"en": "English.", "id": ""}),
        _rule(age_max_years="1"),
        _rule(age_max_years=121),
        _rule(action="self-care"),
        _rule(id="Bad Id"),
        _rule(all_of=[]),
        _rule(all_of=[{"any_terms": "fever", "fields": ["notes"]}]),
        _rule(all_of=[{"any_terms": ["*fever"], "fields": ["notes"]}]),
        _rule(all_of=[{"any_terms": ["fever"], "fields": ["history"]}]),
        _rule(all_of=[{"any_of": [{"any_terms": ["fever"], "fields": ["notes"]}], "x": 1}]),
        _rule(colour="red"),
    ],
)
def test_editor_and_box_both_refuse(tmp_path: Path, rule: dict[str, Any]) -> None:
    """What an editor flags with the schema, the box refuses too."""
    document = {"version": 1, "rules": [rule]}
    assert list(_jsonschema_validator().iter_errors(document)), rule
    _refusal(tmp_path, document)


# --------------------------------------------------------------------------------------
# Refusals name the file, the rule and the field
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "where", "message"),
    [
        # A missing field.
        (_without("description", _rule("r1")), "rule 'r1'", "'description' must be a non-empty"),
        (_without("all_of", _rule("r1")), "rule 'r1'", "'all_of' must be a non-empty list"),
        (_without("reason", _rule("r1")), "rule 'r1'", "'reason' must be an object"),
        (_without("id", _rule()), "rule #2", "'id' must be a non-empty string"),
        # The English or the Indonesian text missing or blank.
        (
            _rule("r1", reason={"en": "English only."}),
            "rule 'r1'",
            "the Indonesian text 'reason.id' is missing",
        ),
        (
            _rule("r1", reason={"id": "Hanya bahasa Indonesia."}),
            "rule 'r1'",
            "the English text 'reason.en' is missing",
        ),
        (
            _rule("r1", reason={"en": "English.", "id": "   "}),
            "rule 'r1'",
            "'reason.id' must be a non-empty string (the Indonesian text)",
        ),
        (
            _rule("r1", reason={"en": "English.", "id": "Indonesia.", "fr": "Français."}),
            "rule 'r1'",
            "unknown key(s) ['fr']",
        ),
        (_rule("r1", reason="urgent"), "rule 'r1'", "'reason' must be an object"),
        # A wrong type.
        (_rule("r1", age_min_years="65"), "rule 'r1'", "'age_min_years' must be a whole number"),
        (_rule("r1", age_min_years=6.5), "rule 'r1'", "'age_min_years' must be a whole number"),
        (_rule("r1", description=7), "rule 'r1'", "'description' must be a non-empty string"),
        (
            _rule("r1", all_of=[{"any_terms": "fever", "fields": ["notes"]}]),
            "rule 'r1', clause #1",
            "'any_terms' must be a non-empty list of terms",
        ),
        (
            _rule("r1", all_of=[{"any_terms": ["fever"], "fields": "notes"}]),
            "rule 'r1', clause #1",
            "'fields' must be a non-empty list among",
        ),
        (
            _rule("r1", all_of=[{"any_terms": ["fever", 3], "fields": ["notes"]}]),
            "rule 'r1', clause #1",
            "bad term 3 in 'any_terms'",
        ),
        (_rule("r1", all_of=["fever"]), "rule 'r1', clause #1", "a clause must be an object"),
        (_rule("r1", all_of={"any_terms": ["fever"]}), "rule 'r1'", "'all_of' must be a non-empty"),
        # A bad term (terms compile to the matching regex).
        (
            _rule("r1", all_of=[{"any_terms": ["bl*eed"], "fields": ["notes"]}]),
            "rule 'r1', clause #1",
            "bad term 'bl*eed' in 'any_terms': a term needs letters or digits",
        ),
        (
            _rule(
                "r1",
                all_of=[{"any_terms": ["mata"], "fields": ["notes"], "ignore_terms": ["!!"]}],
            ),
            "rule 'r1', clause #1",
            "bad term '!!' in 'ignore_terms'",
        ),
        # Deep inside an any_of group.
        (
            _rule(
                "r1",
                all_of=[
                    {"any_terms": ["luka"], "fields": ["notes"]},
                    {
                        "any_of": [
                            {"any_terms": ["bulan"], "fields": ["duration"]},
                            {"any_terms": ["bulan"], "fields": ["age"]},
                        ]
                    },
                ],
            ),
            "rule 'r1', clause #2, alternative #2",
            "unknown field 'age'; use ['body_site', 'duration', 'findings', 'notes', 'symptoms']",
        ),
        (_rule("r1", all_of=[{"any_of": "x"}]), "rule 'r1', clause #1", "'any_of' must be"),
        (
            _rule("r1", all_of=[{"any_of": [{"any_terms": ["a1"], "fields": ["notes"], "x": 1}]}]),
            "rule 'r1', clause #1, alternative #1",
            "unknown clause key(s) ['x']",
        ),
        (_rule("r1", age_min_years=None, age_max_years=200), "rule 'r1'", "from 0 to 120"),
        ("not a rule", "rule #2", "a rule must be a JSON object"),
    ],
)
def test_refusal_names_the_rule_and_the_field(
    tmp_path: Path, rule: object, where: str, message: str
) -> None:
    error = _refusal(tmp_path, {"version": 1, "rules": [_rule("good_rule"), rule]})
    assert len(error.problems) == 1, error.problems
    (problem,) = error.problems
    assert problem.where() == where
    assert message in problem.message
    assert str(error).startswith(f"red-flag {where.split(',')[0]} in {tmp_path}")
    assert message in str(error)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    error = _refusal(tmp_path, {"rules": [_rule("a"), _rule("twice"), _rule("twice")]})
    assert str(error) == (
        f"red-flag rule 'twice' in {tmp_path / 'my_rules.json'}: "
        "duplicate id (rule #2 already uses it)"
    )


def test_every_problem_is_listed_one_per_line(tmp_path: Path) -> None:
    bad = _rule(
        "r1",
        action="asap",
        reason={"en": "English."},
        all_of=[{"any_terms": ["fever"], "fields": ["notes"], "none_of": ["x"], "also": 1}],
        colour="red",
    )
    error = _refusal(tmp_path, {"version": 1, "rules": [bad, _rule(id=None)], "comment": "x"})
    lines = str(error).splitlines()
    assert lines[0] == f"red-flag rules {tmp_path / 'my_rules.json'}: 6 problems"
    assert lines[1:] == [
        "  rule 'r1': bad action 'asap'; use one of ['routine referral', 'urgent referral']",
        "  rule 'r1': 'reason' must be an object with exactly the keys 'en' and 'id': "
        "the Indonesian text 'reason.id' is missing",
        "  rule 'r1', clause #1: unknown clause key(s) ['none_of', 'also']; a clause takes "
        "'any_terms', 'fields' and 'ignore_terms'",
        "  rule 'r1': unknown key(s) ['colour']; a rule takes id, description, action, "
        "reason, all_of, age_min_years, age_max_years",
        "  rule #2: 'id' must be a non-empty string of a-z, 0-9 and '_'",
        "  file: unknown top-level key(s) ['comment']; a rule file holds '$schema', "
        "'version', 'rules'",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([_rule()], "expected an object with a 'rules' list"),
        ({"version": 1}, "expected an object with a 'rules' list"),
        ({"rules": {"id": "x"}}, "expected an object with a 'rules' list"),
        ({"version": "1", "rules": []}, "unsupported version '1'"),
        ({"version": 2, "rules": [{"something": "else"}]}, "unsupported version 2"),
        ({"$schema": 5, "rules": []}, "'$schema' must be a string"),
    ],
)
def test_refusals_of_the_whole_file(tmp_path: Path, document: object, message: str) -> None:
    error = _refusal(tmp_path, document)
    assert str(error).startswith(f"red-flag rules {tmp_path / 'my_rules.json'}: {message}")
    assert len(error.problems) == 1


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "my_rules.json"
    path.write_text('{"rules": [', encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"my_rules\.json: not valid JSON: .*line 1"):
        load_rules(path)


def test_refusal_is_a_value_error_keeping_the_pydantic_details(tmp_path: Path) -> None:
    error = _refusal(tmp_path, {"rules": [_rule(action="asap")]})
    assert isinstance(error, ValueError)
    assert error.origin == str(tmp_path / "my_rules.json")
    assert error.__cause__ is not None  # the pydantic ValidationError, for debugging


# --------------------------------------------------------------------------------------
# Valid files
# --------------------------------------------------------------------------------------


def test_parse_rule_file_and_conversion() -> None:
    document = {
        "$schema": "./red_flags.schema.json",
        "rules": [
            _rule(
                "r1",
                action="routine referral",
                description="  padded  ",
                all_of=[
                    {"any_terms": ["fever"], "fields": ["notes", "symptoms", "notes"]},
                    {"any_of": [{"any_terms": ["rash"], "fields": ["findings"]}]},
                ],
                age_min_years=1,
                age_max_years=1,
            )
        ],
    }
    parsed = parse_rule_file(document, "inline")
    assert parsed.version == 1
    (rule,) = parsed.to_rules()
    assert rule.action is Action.ROUTINE_REFERRAL
    assert rule.description == "padded"
    assert rule.reason == {Language.EN: "English reason.", Language.ID: "Alasan bahasa Indonesia."}
    assert [[clause.fields for clause in group] for group in rule.all_of] == [
        [("notes", "symptoms")],
        [("findings",)],
    ]
    assert rule.all_of[0][0].ignore_terms == ()
    assert (rule.age_min_years, rule.age_max_years) == (1, 1)


def test_an_empty_rule_list_is_allowed(tmp_path: Path) -> None:
    assert load_rules(_write(tmp_path, {"version": 1, "rules": []})) == []


def test_the_default_file_is_the_bundled_resource() -> None:
    assert default_rules_path() == resource_path("edge_server", "data", "red_flags.json")
    assert [rule.id for rule in load_rules()] == [
        rule.id for rule in load_rules(default_rules_path())
    ]
