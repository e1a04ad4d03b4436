"""Tests of the safety layer: photo quality gate, red-flag rules and their application."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter
from pydantic import ValidationError

from edge_server.safety.quality import QualitySettings, check_quality, laplacian_variance, mean_luma
from edge_server.safety.red_flags import (
    RedFlagRule,
    TriggeredFlag,
    apply_safety,
    evaluate_red_flags,
)
from edge_server.safety.rule_file import load_rules
from edge_server.safety.terms import normalise_text
from skinspector.core.case_schema import Action, Assessment, ClinicalContext, Language
from skinspector.core.imaging import PreparedImage, prepare_image
from skinspector.core.resources import resource_path
from skinspector.core.samples import lesion_photo

RULES = load_rules()
RULE_BY_ID = {rule.id: rule for rule in RULES}


# --------------------------------------------------------------------------------------
# Red flags: one positive example per language and near misses for every bundled rule
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    notes: str | None = None
    symptoms: tuple[str, ...] = ()
    body_site: str | None = None
    duration: str | None = None
    findings: str = ""
    age: int | None = None

    def context(self, language: Language = Language.EN) -> ClinicalContext:
        return ClinicalContext(
            notes=self.notes,
            symptoms=list(self.symptoms),
            body_site=self.body_site,
            duration=self.duration,
            age_years=self.age,
            language=language,
        )

    def fired(self, language: Language = Language.EN) -> dict[str, TriggeredFlag]:
        flags = evaluate_red_flags(RULES, self.context(language), self.findings)
        return {flag.rule_id: flag for flag in flags}


@dataclass(frozen=True)
class Examples:
    english: Case
    indonesian: Case
    near_misses: tuple[Case, ...] = field(default_factory=tuple)


EXAMPLES: dict[str, Examples] = {
    "changing_pigmented_lesion": Examples(
        english=Case(notes="Mole on the back has grown and bled twice this month."),
        indonesian=Case(notes="Tahi lalat di punggung makin besar dan berdarah."),
        near_misses=(
            Case(notes="Mole on the back, stable for years, no itching."),
            Case(notes="Tahi lalat di punggung, sama seperti dulu.", findings="uniform brown"),
        ),
    ),
    "rapidly_growing_lesion": Examples(
        english=Case(notes="Lump on the cheek growing quickly.", duration="3 weeks"),
        indonesian=Case(notes="Benjolan di pipi tumbuh cepat.", duration="3 minggu"),
        near_misses=(
            Case(notes="Lump on the cheek growing slowly.", duration="2 years"),
            Case(notes="Hair grows fast around the scar, lump unchanged."),
        ),
    ),
    "blistering_with_mucosal_involvement": Examples(
        english=Case(symptoms=("blisters on the chest", "sores in the mouth", "red eyes")),
        indonesian=Case(symptoms=("kulit melepuh", "sariawan", "mata merah")),
        near_misses=(
            Case(notes="Small blister on the upper lip, tingling before it appeared."),
            Case(symptoms=("sores in the mouth", "red eyes")),
        ),
    ),
    "skin_peeling_with_fever": Examples(
        english=Case(notes="Skin peeling off in sheets.", symptoms=("high fever",)),
        indonesian=Case(notes="Kulit mengelupas lebar.", symptoms=("demam tinggi",)),
        near_misses=(Case(notes="Peeling skin between the toes, itchy."),),
    ),
    "widespread_blistering": Examples(
        english=Case(notes="Large blisters all over the body."),
        indonesian=Case(notes="Lepuh besar di seluruh tubuh."),
        near_misses=(Case(notes="Two blisters on the right hand after gardening."),),
    ),
    "fever_with_spreading_infection": Examples(
        english=Case(symptoms=("fever", "spreading redness on the leg", "warm to touch")),
        indonesian=Case(symptoms=("demam", "kemerahan meluas di kaki")),
        near_misses=(
            Case(symptoms=("fever",), notes="Given paracetamol and a warm compress."),
            Case(symptoms=("demam",), notes="Sudah dikompres hangat, ruam gatal."),
            Case(symptoms=("spreading redness on the leg", "very painful")),
        ),
    ),
    "swelling_with_breathing_difficulty": Examples(
        english=Case(notes="Lips and tongue swollen after a bee sting, difficulty breathing."),
        indonesian=Case(notes="Bibir dan lidah bengkak setelah disengat lebah, sesak napas."),
        near_misses=(Case(notes="Lips swollen after eating shrimp, breathing normally."),),
    ),
    "zoster_near_eye": Examples(
        english=Case(notes="Painful shingles with blisters.", body_site="forehead and eyelid"),
        indonesian=Case(notes="Cacar ular melepuh.", body_site="dahi kiri dekat mata"),
        near_misses=(
            Case(notes="Cacar ular melepuh.", body_site="mata kaki kiri"),
            Case(notes="Painful shingles with blisters.", body_site="left side of the chest"),
        ),
    ),
    "non_healing_ulcer": Examples(
        english=Case(notes="Sore on the cheek that is not healing.", duration="3 months"),
        indonesian=Case(notes="Luka di pipi tidak kunjung sembuh.", duration="2 bulan"),
        near_misses=(
            Case(notes="Ulcer on the shin after a fall.", duration="2 weeks"),
            Case(notes="Bayi 6 bulan, luka di lutut.", duration="5 hari"),
            Case(notes="5 year old boy with a sore on the knee.", duration="3 days"),
            Case(notes="Sore throat for 2 months, rash on the neck."),
            Case(notes="Itchy dry patches with scratch wounds.", duration="2 months"),
            Case(notes="Eksim gatal, banyak luka garukan.", duration="3 bulan"),
        ),
    ),
    "febrile_infant_with_rash": Examples(
        english=Case(age=0, symptoms=("fever", "rash on the trunk")),
        indonesian=Case(age=0, symptoms=("demam", "ruam di badan")),
        near_misses=(
            Case(age=1, symptoms=("fever", "rash on the trunk")),
            Case(age=None, symptoms=("fever", "rash on the trunk")),
            Case(age=0, symptoms=("rash on the trunk",)),
        ),
    ),
    "purpuric_rash_with_fever": Examples(
        english=Case(symptoms=("fever", "purple spots that do not fade when pressed")),
        indonesian=Case(symptoms=("demam", "bintik merah tidak hilang saat ditekan")),
        near_misses=(
            Case(symptoms=("fever", "red spots that fade when pressed")),
            Case(notes="Bruise on the shin after a fall."),
        ),
    ),
    "numb_skin_patch": Examples(
        english=Case(notes="Pale patch on the forearm.", symptoms=("numbness",)),
        indonesian=Case(notes="Bercak putih di lengan.", symptoms=("mati rasa",)),
        near_misses=(Case(notes="Pale patch on the forearm, itchy and scaly."),),
    ),
}


def test_example_table_covers_exactly_the_bundled_rules() -> None:
    assert set(EXAMPLES) == set(RULE_BY_ID)
    assert all(examples.near_misses for examples in EXAMPLES.values())


@pytest.mark.parametrize("rule_id", sorted(EXAMPLES))
def test_rule_fires_on_english_example(rule_id: str) -> None:
    fired = EXAMPLES[rule_id].english.fired(Language.EN)
    assert rule_id in fired
    assert fired[rule_id].reason == RULE_BY_ID[rule_id].reason[Language.EN]
    assert fired[rule_id].action is RULE_BY_ID[rule_id].action


@pytest.mark.parametrize("rule_id", sorted(EXAMPLES))
def test_rule_fires_on_indonesian_example(rule_id: str) -> None:
    fired = EXAMPLES[rule_id].indonesian.fired(Language.ID)
    assert rule_id in fired
    assert fired[rule_id].reason == RULE_BY_ID[rule_id].reason[Language.ID]


@pytest.mark.parametrize("rule_id", sorted(EXAMPLES))
def test_rule_quiet_on_near_misses(rule_id: str) -> None:
    for case in EXAMPLES[rule_id].near_misses:
        assert rule_id not in case.fired(), case


def test_bundled_rules_cover_the_required_presentations() -> None:
    assert len(RULES) >= 10
    assert RULE_BY_ID["numb_skin_patch"].action is Action.ROUTINE_REFERRAL
    assert RULE_BY_ID["febrile_infant_with_rash"].age_max_years == 0
    urgent = [rule for rule in RULES if rule.action is Action.URGENT_REFERRAL]
    assert len(urgent) == len(RULES) - 1
    for rule in RULES:
        assert rule.reason[Language.EN] != rule.reason[Language.ID]


def test_explicit_path_loads_the_same_rules_as_the_default() -> None:
    bundled = resource_path("edge_server", "data", "red_flags.json")
    assert [rule.id for rule in load_rules(bundled)] == [rule.id for rule in RULES]


def test_a_quiet_case_fires_nothing() -> None:
    case = Case(
        notes="Itchy ring-shaped rash on the thigh.",
        symptoms=("itching",),
        body_site="right thigh",
        duration="2 weeks",
        findings="annular scaly plaque with a clear centre",
        age=30,
    )
    assert case.fired() == {}


def test_findings_text_is_searched() -> None:
    case = Case(notes="Pigmented spot on the shin.", findings="irregular border, bleeding")
    assert "changing_pigmented_lesion" in case.fired()
    assert "changing_pigmented_lesion" not in Case(notes="Pigmented spot on the shin.").fired()


def test_flags_come_in_rule_order() -> None:
    case = Case(
        age=0,
        symptoms=("fever", "rash", "skin peeling", "spots that do not fade when pressed"),
    )
    fired = list(case.fired())
    assert fired == [rule.id for rule in RULES if rule.id in fired]
    assert {"skin_peeling_with_fever", "febrile_infant_with_rash", "purpuric_rash_with_fever"} <= (
        set(fired)
    )


# --------------------------------------------------------------------------------------
# Matching semantics, on small custom rule files
# --------------------------------------------------------------------------------------


def _rule(rule_id: str = "test_rule", **overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "description": "A test rule.",
        "reason": {"en": "English reason.", "id": "Alasan bahasa Indonesia."},
        "all_of": [{"any_terms": ["fever"], "fields": ["notes"]}],
    }
    rule.update(overrides)
    return rule


def _write(tmp_path: Path, *rules: dict[str, Any]) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"version": 1, "rules": list(rules)}), encoding="utf-8")
    return path


@pytest.fixture
def one_clause(tmp_path: Path) -> Callable[..., RedFlagRule]:
    """A loaded rule with one clause built from the given terms (and options)."""

    def build(terms: list[str], fields: list[str] | None = None, **clause: Any) -> RedFlagRule:
        raw = _rule(all_of=[{"any_terms": terms, "fields": fields or ["notes"], **clause}])
        return load_rules(_write(tmp_path, raw))[0]

    return build


def _fires(rule: RedFlagRule, findings: str = "", **context: Any) -> bool:
    return bool(evaluate_red_flags([rule], ClinicalContext(**context), findings))


@pytest.mark.parametrize(
    ("term", "text", "expected"),
    [
        ("demam", "DÉMAM tinggi", True),  # case- and accent-insensitive
        ("café", "went to the CAFE", True),
        ("mole", "a molecule", False),  # whole words only
        ("mole", "guacamole", False),
        ("mole", "Mole, left arm", True),
        ("eye", "eyebrow", False),
        ("non-healing", "non healing sore", True),  # hyphens and spaces are the same
        ("non healing", "Non-Healing sore", True),
        ("sesak napas", "sesak   napas!", True),
        ("sesak napas", "napas sesak", False),  # word order matters
        ("bleed*", "bleeding mole", True),  # a final * continues the last word
        ("bleed*", "bleeds", True),
        ("bleed*", "blee", False),
        ("skin peel*", "skin peeling", True),
        ("skin peel*", "peeling skin", False),
        ("for # months", "for 3 months", True),  # '#' is a number
        ("for # months", "for 1.5 months", True),
        ("for # months", "for many months", False),
        ("# weeks", "3weeks", True),  # digits and letters split into words
        ("can't breathe", "I cant breathe", False),
        ("can't breathe", "I can't breathe", True),
    ],
)
def test_term_matching(
    one_clause: Callable[..., RedFlagRule], term: str, text: str, expected: bool
) -> None:
    assert _fires(one_clause([term]), notes=text) is expected


def test_normalise_text() -> None:
    assert normalise_text("  Démam, TINGGI! sejak 3hari ") == "demam tinggi sejak 3 hari"
    assert normalise_text("—") == ""


def test_clause_searches_only_its_fields(one_clause: Callable[..., RedFlagRule]) -> None:
    rule = one_clause(["eyelid"], ["body_site"])
    assert _fires(rule, body_site="left eyelid")
    assert not _fires(rule, notes="left eyelid")
    assert _fires(one_clause(["eyelid"], ["findings"]), findings="vesicles on the eyelid")


def test_symptoms_are_matched_one_by_one(one_clause: Callable[..., RedFlagRule]) -> None:
    rule = one_clause(["lip swelling"], ["symptoms"])
    assert _fires(rule, symptoms=["Lip swelling"])
    assert not _fires(rule, symptoms=["lip", "swelling"])


def test_ignore_terms_mask_phrases(one_clause: Callable[..., RedFlagRule]) -> None:
    rule = one_clause(["mata"], ["notes"], ignore_terms=["mata kaki"])
    assert not _fires(rule, notes="lepuh di mata kaki")
    assert _fires(rule, notes="lepuh di mata kaki dan mata kanan")
    assert _fires(rule, notes="lepuh di sekitar mata")
    # A term cannot match across the masked phrase.
    spanning = one_clause(["sekitar kiri"], ["notes"], ignore_terms=["mata kaki"])
    assert not _fires(spanning, notes="sekitar mata kaki kiri")


def test_any_of_groups_search_different_fields(tmp_path: Path) -> None:
    raw = _rule(
        all_of=[
            {"any_terms": ["luka"], "fields": ["notes"]},
            {
                "any_of": [
                    {"any_terms": ["bulan"], "fields": ["duration"]},
                    {"any_terms": ["sudah # bulan"], "fields": ["notes"]},
                ]
            },
        ]
    )
    rule = load_rules(_write(tmp_path, raw))[0]
    assert _fires(rule, notes="luka di kaki", duration="2 bulan")
    assert _fires(rule, notes="luka di kaki sudah 2 bulan")
    assert not _fires(rule, notes="bayi 6 bulan, luka di kaki", duration="3 hari")
    assert not _fires(rule, notes="sudah 2 bulan")  # the first clause must match too


@pytest.mark.parametrize(
    ("age", "expected"), [(64, False), (65, True), (80, True), (81, False), (None, False)]
)
def test_age_bounds(tmp_path: Path, age: int | None, expected: bool) -> None:
    rule = load_rules(_write(tmp_path, _rule(age_min_years=65, age_max_years=80)))[0]
    assert _fires(rule, notes="fever", age_years=age) is expected


@pytest.mark.parametrize(("age", "expected"), [(0, True), (1, False), (None, False)])
def test_bundled_infant_rule_needs_a_known_age_under_one(age: int | None, expected: bool) -> None:
    case = Case(age=age, symptoms=("demam", "ruam"))
    assert ("febrile_infant_with_rash" in case.fired(Language.ID)) is expected


def test_rule_without_age_bound_fires_at_any_age(tmp_path: Path) -> None:
    rule = load_rules(_write(tmp_path, _rule()))[0]
    for age in (None, 0, 50, 120):
        assert _fires(rule, notes="fever", age_years=age)


def test_action_defaults_to_urgent_and_accepts_routine(tmp_path: Path) -> None:
    urgent, routine = load_rules(
        _write(tmp_path, _rule("a"), _rule("b", action="routine referral"))
    )
    assert urgent.action is Action.URGENT_REFERRAL
    assert routine.action is Action.ROUTINE_REFERRAL


# --------------------------------------------------------------------------------------
# load_rules validation
# --------------------------------------------------------------------------------------

_CLAUSE = {"any_terms": ["fever"], "fields": ["notes"]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"all_of": [{"any_terms": ["fever"], "fields": ["history"]}]}, "unknown field 'history'"),
        ({"all_of": [{"any_terms": [], "fields": ["notes"]}]}, "'any_terms' must be a non-empty"),
        ({"all_of": [{"any_terms": ["  "], "fields": ["notes"]}]}, "bad term"),
        ({"all_of": [{"any_terms": ["*bleed"], "fields": ["notes"]}]}, "bad term '*bleed'"),
        ({"all_of": [{"any_terms": ["ab*"], "fields": ["notes"]}]}, "bad term 'ab*'"),
        ({"all_of": [{"any_terms": ["#"], "fields": ["notes"]}]}, "bad term '#'"),
        ({"all_of": [{"any_terms": ["fever"], "fields": []}]}, "'fields' must be a non-empty"),
        ({"all_of": [{"any_terms": ["fever"]}]}, "'fields' must be a non-empty"),
        ({"all_of": [{**_CLAUSE, "ignore_terms": []}]}, "'ignore_terms' must be a non-empty"),
        ({"all_of": [{**_CLAUSE, "none_of": ["x"]}]}, "unknown clause key"),
        ({"all_of": [{"any_of": []}]}, "'any_of' must be a non-empty"),
        ({"all_of": [{"any_of": [_CLAUSE], "fields": ["notes"]}]}, "takes no other keys"),
        ({"all_of": []}, "'all_of' must be a non-empty"),
        ({"action": "self-care"}, "bad action 'self-care'"),
        ({"action": "asap"}, "bad action 'asap'"),
        ({"reason": {"en": "Only English."}}, "'reason' must be an object"),
        ({"reason": {"en": "English.", "id": ""}}, "'reason.id' must be a non-empty"),
        ({"description": ""}, "'description' must be a non-empty"),
        ({"age_max_year": 1}, "unknown key(s) ['age_max_year']"),
        ({"age_min_years": 10, "age_max_years": 5}, "'age_min_years' exceeds"),
        ({"age_max_years": -1}, "'age_max_years' must be a whole number"),
        ({"age_max_years": True}, "'age_max_years' must be a whole number"),
    ],
)
def test_load_rules_names_the_bad_rule(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, _rule("good_rule"), _rule("bad_rule", **overrides))
    with pytest.raises(ValueError, match="rule 'bad_rule'") as caught:
        load_rules(path)
    assert message in str(caught.value)


def test_load_rules_rejects_duplicate_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"rule 'twice'.*duplicate id"):
        load_rules(_write(tmp_path, _rule("twice"), _rule("twice")))


@pytest.mark.parametrize("bad_id", ["", "Bad Id", 7, None])
def test_load_rules_rejects_bad_ids(tmp_path: Path, bad_id: object) -> None:
    with pytest.raises(ValueError, match=r"rule #2 .*'id' must be"):
        load_rules(_write(tmp_path, _rule("first"), _rule(id=bad_id)))


def test_load_rules_rejects_bad_documents(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_rules(path)
    path.write_text(json.dumps([_rule()]), encoding="utf-8")
    with pytest.raises(ValueError, match="'rules' list"):
        load_rules(path)
    path.write_text(json.dumps({"version": 2, "rules": [_rule()]}), encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported version 2"):
        load_rules(path)


# --------------------------------------------------------------------------------------
# apply_safety
# --------------------------------------------------------------------------------------


def _assessment(action: Action, red_flags: list[str] | None = None) -> Assessment:
    return Assessment(
        findings=["brown macule"],
        red_flags=red_flags or [],
        action=action,
        action_from_model=True,
        disclaimer="Decision support only.",
        raw_text="raw model output",
        complete=True,
    )


def _flag(action: Action, reason: str = "reason", rule_id: str = "r") -> TriggeredFlag:
    return TriggeredFlag(rule_id=rule_id, action=action, reason=reason)


@pytest.mark.parametrize("model_action", list(Action))
@pytest.mark.parametrize(
    "flag_actions",
    [
        (),
        (Action.ROUTINE_REFERRAL,),
        (Action.URGENT_REFERRAL,),
        (Action.URGENT_REFERRAL, Action.ROUTINE_REFERRAL),
    ],
)
def test_action_is_the_most_urgent_and_never_lowered(
    model_action: Action, flag_actions: tuple[Action, ...]
) -> None:
    flags = [_flag(action, f"reason {i}") for i, action in enumerate(flag_actions)]
    result = apply_safety(_assessment(model_action), flags)
    assert result.action.rank >= model_action.rank
    assert result.action.rank == max(a.rank for a in (model_action, *flag_actions))


def test_urgent_flag_raises_a_routine_assessment() -> None:
    result = apply_safety(
        _assessment(Action.SELF_CARE),
        [_flag(Action.URGENT_REFERRAL, "Possible melanoma.", "changing_pigmented_lesion")],
    )
    assert result.action is Action.URGENT_REFERRAL
    assert result.red_flags == ["Possible melanoma."]


def test_routine_flag_does_not_lower_an_urgent_assessment() -> None:
    result = apply_safety(
        _assessment(Action.URGENT_REFERRAL, ["bleeding"]),
        [_flag(Action.ROUTINE_REFERRAL, "Possible leprosy.")],
    )
    assert result.action is Action.URGENT_REFERRAL
    assert result.red_flags == ["bleeding", "Possible leprosy."]


def test_reasons_are_appended_without_duplicates() -> None:
    original = _assessment(Action.ROUTINE_REFERRAL, ["Already there."])
    flags = [
        _flag(Action.URGENT_REFERRAL, "Already there.", "a"),
        _flag(Action.URGENT_REFERRAL, "New reason.", "b"),
        _flag(Action.URGENT_REFERRAL, "New reason.", "c"),
    ]
    assert apply_safety(original, flags).red_flags == ["Already there.", "New reason."]


def test_apply_safety_returns_a_copy_and_keeps_other_fields() -> None:
    original = _assessment(Action.SELF_CARE, ["model flag"])
    before = original.model_dump()
    result = apply_safety(original, [_flag(Action.URGENT_REFERRAL, "rule reason")])
    assert original.model_dump() == before  # the input is unchanged
    assert result is not original
    assert result.red_flags is not original.red_flags
    assert result.findings is not original.findings
    unchanged = ("findings", "disclaimer", "raw_text", "complete", "action_from_model")
    for name in unchanged:
        assert getattr(result, name) == getattr(original, name)
    no_flags = apply_safety(original, [])
    assert no_flags == original
    assert no_flags is not original


def test_end_to_end_indonesian_case() -> None:
    context = ClinicalContext(
        notes="Tahi lalat di lengan makin besar dan berdarah",
        symptoms=["mati rasa"],
        language=Language.ID,
    )
    flags = evaluate_red_flags(RULES, context, findings="bercak hitam dengan tepi tidak rata")
    assert [flag.rule_id for flag in flags] == ["changing_pigmented_lesion", "numb_skin_patch"]
    result = apply_safety(_assessment(Action.SELF_CARE), flags)
    assert result.action is Action.URGENT_REFERRAL
    assert result.red_flags == [
        RULE_BY_ID["changing_pigmented_lesion"].reason[Language.ID],
        RULE_BY_ID["numb_skin_patch"].reason[Language.ID],
    ]


# --------------------------------------------------------------------------------------
# Photo quality gate
# --------------------------------------------------------------------------------------


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _photo(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    return Image.open(io.BytesIO(lesion_photo(width, height, seed=seed))).convert("RGB")


def _codes(image: PreparedImage, settings: QualitySettings | None = None) -> list[str]:
    return [issue.code for issue in check_quality(image, settings)]


@pytest.mark.parametrize(
    ("width", "height", "seed"),
    [(1024, 768, 0), (1024, 768, 1), (1024, 768, 2), (4000, 3000, 0), (3000, 4000, 1)],
)
def test_normal_lesion_photo_passes(width: int, height: int, seed: int) -> None:
    image = prepare_image(lesion_photo(width, height, seed=seed))
    assert check_quality(image) == []


def test_tiny_source_is_too_small() -> None:
    image = prepare_image(lesion_photo(200, 150))
    assert image.width * image.height > 200 * 150  # upscaled: the size check must use source
    issues = {issue.code: issue for issue in check_quality(image)}
    assert "too_small" in issues
    assert (issues["too_small"].measured, issues["too_small"].limit) == (150.0, 320.0)
    assert "150" in issues["too_small"].message[Language.EN]
    assert "320" in issues["too_small"].message[Language.ID]


def test_source_side_exactly_at_the_limit_passes() -> None:
    image = prepare_image(lesion_photo(427, 320))
    assert "too_small" not in _codes(image)


def test_near_black_photo_is_too_dark() -> None:
    dark = _photo().point(lambda value: value // 12)
    issues = {issue.code: issue for issue in check_quality(prepare_image(_encode(dark)))}
    assert "too_dark" in issues
    assert "too_bright" not in issues
    assert issues["too_dark"].measured < 40.0
    assert "too dark" in issues["too_dark"].message[Language.EN]
    assert "terlalu gelap" in issues["too_dark"].message[Language.ID]


def test_near_white_photo_is_too_bright() -> None:
    bright = _photo().point(lambda value: 240 + value // 17)
    issues = {issue.code: issue for issue in check_quality(prepare_image(_encode(bright)))}
    assert "too_bright" in issues
    assert "too_dark" not in issues
    assert issues["too_bright"].measured > 225.0
    assert "too bright" in issues["too_bright"].message[Language.EN]
    assert "terlalu terang" in issues["too_bright"].message[Language.ID]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heavily_blurred_photo_is_too_blurry(seed: int) -> None:
    blurred = _photo(seed=seed).filter(ImageFilter.GaussianBlur(radius=8))
    image = prepare_image(_encode(blurred))
    issues = check_quality(image)
    assert [issue.code for issue in issues] == ["too_blurry"]
    issue = issues[0]
    assert issue.measured < issue.limit == QualitySettings().min_sharpness
    assert "too blurry" in issue.message[Language.EN]
    assert "terlalu buram" in issue.message[Language.ID]
    assert "," in issue.message[Language.ID].split("ketajaman ")[1].split(" ")[0]


def test_zero_limits_disable_checks() -> None:
    blurred = prepare_image(_encode(_photo().filter(ImageFilter.GaussianBlur(radius=8))))
    assert _codes(blurred) == ["too_blurry"]
    assert _codes(blurred, QualitySettings(min_sharpness=0.0)) == []
    tiny = prepare_image(lesion_photo(200, 150))
    assert "too_small" in _codes(tiny)
    assert _codes(tiny, QualitySettings(min_source_side=0, min_sharpness=0.0)) == []


def test_messages_never_show_the_limit_as_the_measured_value() -> None:
    dark = Image.new("RGB", (640, 480), (39, 39, 39))
    settings = QualitySettings(min_brightness=39.6, min_sharpness=0.0)
    issues = check_quality(prepare_image(_encode(dark)), settings)
    assert [issue.code for issue in issues] == ["too_dark"]
    assert "mean brightness 39, needs at least 40" in issues[0].message[Language.EN]


def test_quality_settings_validation() -> None:
    with pytest.raises(ValidationError, match="min_brightness must not exceed"):
        QualitySettings(min_brightness=200, max_brightness=100)
    with pytest.raises(ValidationError):
        QualitySettings(min_sharpness=-1)
    with pytest.raises(ValidationError):
        QualitySettings(max_brightness=300)
    with pytest.raises(ValidationError):
        QualitySettings(min_side=10)  # type: ignore[call-arg]
    defaults = QualitySettings()
    assert (defaults.min_source_side, defaults.min_brightness, defaults.max_brightness) == (
        320,
        40.0,
        225.0,
    )


def test_brightness_is_bt601_luma() -> None:
    colour = (200, 100, 50)
    image = prepare_image(_encode(Image.new("RGB", (640, 480), colour)))
    luma = np.asarray(Image.open(io.BytesIO(image.jpeg)).convert("L"), dtype=np.float32)
    expected = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    assert mean_luma(luma) == pytest.approx(expected, abs=1.5)


def test_laplacian_variance_formula() -> None:
    flat = np.full((10, 12), 100.0, dtype=np.float32)
    assert laplacian_variance(flat) == 0.0
    assert mean_luma(flat) == 100.0
    # Checkerboard of 0/1: every interior Laplacian is 4 - 8v, i.e. +4 or -4: variance 16.
    board = (np.indices((10, 10)).sum(axis=0) % 2).astype(np.float32)  # 8x8 interior
    assert laplacian_variance(board) == pytest.approx(16.0)
    # A linear ramp has zero second derivative.
    ramp = np.tile(np.arange(20, dtype=np.float32), (6, 1))
    assert laplacian_variance(ramp) == 0.0
    assert laplacian_variance(np.zeros((2, 5), dtype=np.float32)) == 0.0
