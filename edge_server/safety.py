"""Safety layer around the model: a photo quality gate and rule-based red flags.

Two independent, deterministic checks that do not depend on the vision-language model:

* ``check_quality`` rejects photos the model cannot judge (too small, dark, bright or
  blurry) with a reason and retake advice in English and Bahasa Indonesia.
* ``evaluate_red_flags`` runs clinician-reviewable rules, stored as data in
  ``data/red_flags.json``, over the clinical context and the model's visible-findings text;
  ``apply_safety`` then raises the assessment's action to the most urgent one found and
  appends each rule's reason to ``red_flags``. Rules can only raise urgency, never lower it.

Term matching (``evaluate_red_flags``)
    Text and terms are normalised the same way: Unicode NFKD, combining marks dropped
    (accent-insensitive), ``str.casefold`` (case-insensitive), then split into words (runs
    of letters, runs of digits: "3hari" is "3 hari") joined by one space. A term matches
    when its normalised words occur as whole, consecutive words of the text, so ``"mole"``
    does not match "molecule" and ``"non-healing"`` matches "non healing". A term ending
    in ``*`` matches any word that starts with its last word (``"bleed*"``: bleed, bleeds,
    bleeding), and a ``#`` word matches any number (``"for # months"``). Matching ignores
    negation: "no fever" still contains "fever". That errs towards referral, which is the
    safe direction for a red flag.

Rule file
    ``{"version": 1, "rules": [rule, ...]}``; a rule is ``{"id", "description", "action"
    ("urgent referral" by default, or "routine referral"), "reason": {"en", "id"},
    "all_of": [clause, ...], "age_min_years"?, "age_max_years"?}``. A clause is
    ``{"any_terms": [...], "fields": [...], "ignore_terms"?: [...]}``: it matches when any
    term occurs in any of the fields, after the ``ignore_terms`` phrases are masked out of
    the text (``"mata kaki"``, the ankle, so that ``"mata"``, the eye, does not match it).
    An entry of ``all_of`` may also be ``{"any_of": [clause, ...]}``, which matches when
    any of its clauses does: it lets a rule search different terms in different fields
    (a bare "2 bulan" is a duration in ``duration`` but an age in ``notes``).
"""

from __future__ import annotations

import io
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from skinspector.core.case_schema import Action, Assessment, ClinicalContext, Language
from skinspector.core.imaging import PreparedImage

__all__ = [
    "RULE_FIELDS",
    "QualityIssue",
    "QualitySettings",
    "RedFlagClause",
    "RedFlagRule",
    "TriggeredFlag",
    "apply_safety",
    "check_quality",
    "evaluate_red_flags",
    "laplacian_variance",
    "load_rules",
    "mean_luma",
    "normalise_text",
]

# --------------------------------------------------------------------------------------
# Photo quality gate
# --------------------------------------------------------------------------------------


class QualitySettings(BaseModel):
    """Thresholds of the photo quality gate (a minimum of 0, or ``max_brightness`` 255,
    disables that check).

    ``min_sharpness`` was measured on ``core.samples.lesion_photo`` (seeds 0-59 at
    1024x768, 0-11 at 4000x3000, each run through ``prepare_image``):

    ============================================  ====================================
    input                                         Laplacian variance of prepared image
    ============================================  ====================================
    lesion_photo 1024x768                         min 1.18, median 2.2, max 4.6
    lesion_photo 4000x3000                        min 9.6, median 21, max 35
    1024x768 after Gaussian blur radius 8         max 0.48, median 0.38
    1024x768 after Gaussian blur radius 4         max 0.60
    ============================================  ====================================

    A fully defocused photo bottoms out at about 0.3-0.55 (JPEG and 8-bit quantisation
    noise), so 0.8 sits between the blurred maximum and the sharp minimum of the synthetic
    photos with a margin of about 1.5x on each side. The synthetic photos are far smoother
    than real skin (no pores, hair or sensor noise), so this default only rejects grossly
    out-of-focus or shaken shots; recalibrate on real clinic photos before raising it.
    """

    model_config = ConfigDict(extra="forbid")

    min_source_side: int = Field(
        320,
        ge=0,
        le=10_000,
        description="Shorter side of the ORIGINAL photo, in pixels, at least this.",
    )
    min_brightness: float = Field(
        40.0,
        ge=0.0,
        le=255.0,
        description="Mean luma (BT.601, 0-255) of the prepared image, at least this.",
    )
    max_brightness: float = Field(
        225.0,
        ge=0.0,
        le=255.0,
        description="Mean luma (BT.601, 0-255) of the prepared image, at most this.",
    )
    min_sharpness: float = Field(
        0.8,
        ge=0.0,
        le=10_000.0,
        description="Variance of the 3x3 Laplacian of the prepared image's luma, at least "
        "this (0.8: calibrated on synthetic photos, see the class docstring).",
    )

    @model_validator(mode="after")
    def _ordered_brightness(self) -> QualitySettings:
        if self.min_brightness > self.max_brightness:
            raise ValueError("min_brightness must not exceed max_brightness")
        return self


@dataclass(frozen=True)
class QualityIssue:
    """One reason a photo is unusable, with a retake advice per language."""

    code: str  # "too_small" | "too_dark" | "too_bright" | "too_blurry"
    measured: float
    limit: float
    message: dict[Language, str]


def _luma(image: PreparedImage) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The prepared JPEG's luma plane as float32, shape (height, width).

    JPEG stores YCbCr, so decoding straight to mode ``L`` returns its Y plane,
    Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, full range 0-255), without
    decoding the chroma planes.
    """
    with Image.open(io.BytesIO(image.jpeg)) as decoded:
        decoded.draft("L", decoded.size)
        gray = decoded.convert("L")
    return np.asarray(gray, dtype=np.float32)


def mean_luma(luma: np.ndarray[Any, np.dtype[np.float32]]) -> float:
    """Mean brightness B = (1 / N) * sum(Y) over all N pixels, in 0-255."""
    return float(luma.mean(dtype=np.float64))


def laplacian_variance(luma: np.ndarray[Any, np.dtype[np.float32]]) -> float:
    """Sharpness S = Var(L) of the 4-neighbour Laplacian over the interior pixels.

    L(y, x) = Y(y-1, x) + Y(y+1, x) + Y(y, x-1) + Y(y, x+1) - 4 Y(y, x), i.e. the kernel
    [[0, 1, 0], [1, -4, 1], [0, 1, 0]], evaluated on the (H-2) x (W-2) pixels whose
    neighbours all exist; Var is the population variance. Blur removes the high spatial
    frequencies the Laplacian responds to, so S falls as a photo gets blurrier.
    """
    if luma.shape[0] < 3 or luma.shape[1] < 3:
        return 0.0
    lap = (
        luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
    )
    return float(lap.var(dtype=np.float64))


def _shown(value: float, *, low: bool, decimals: int) -> str:
    """``value`` rounded towards the side it failed on, so it never prints as the limit."""
    scale = 10.0**decimals
    rounded = (math.floor if low else math.ceil)(value * scale) / scale
    return f"{rounded:.{decimals}f}"


def _id_number(text: str) -> str:
    """Indonesian writes a decimal comma."""
    return text.replace(".", ",")


def _issue_too_small(measured: int, limit: int) -> QualityIssue:
    en = (
        f"The photo is too small ({measured} px on its shorter side, needs at least "
        f"{limit} px). Retake it with the camera's normal photo mode and send the original "
        "photo, not a screenshot, a thumbnail or a photo compressed by a chat app."
    )
    ind = (
        f"Foto terlalu kecil ({measured} piksel pada sisi terpendek, minimal {limit} "
        "piksel). Ambil ulang dengan mode foto biasa pada kamera dan kirim foto aslinya, "
        "bukan tangkapan layar, gambar kecil, atau foto yang sudah dikompres aplikasi chat."
    )
    return QualityIssue(
        "too_small", float(measured), float(limit), {Language.EN: en, Language.ID: ind}
    )


def _issue_too_dark(measured: float, limit: float) -> QualityIssue:
    value, bound = _shown(measured, low=True, decimals=0), _shown(limit, low=False, decimals=0)
    en = (
        f"The photo is too dark (mean brightness {value}, needs at least {bound}). Retake it "
        "in daylight or near a window, without flash glare."
    )
    ind = (
        f"Foto terlalu gelap (kecerahan rata-rata {value}, minimal {bound}). Ambil ulang "
        "di bawah cahaya siang hari atau dekat jendela, tanpa silau lampu kilat."
    )
    return QualityIssue("too_dark", measured, limit, {Language.EN: en, Language.ID: ind})


def _issue_too_bright(measured: float, limit: float) -> QualityIssue:
    value, bound = _shown(measured, low=False, decimals=0), _shown(limit, low=True, decimals=0)
    en = (
        f"The photo is too bright (mean brightness {value}, at most {bound}). Retake it in "
        "shade or indirect daylight, out of direct sunlight and without flash, so that the "
        "skin is not washed out."
    )
    ind = (
        f"Foto terlalu terang (kecerahan rata-rata {value}, maksimal {bound}). Ambil ulang "
        "di tempat teduh atau cahaya siang tidak langsung, tanpa sinar matahari langsung "
        "dan tanpa lampu kilat, agar warna kulit tidak pudar."
    )
    return QualityIssue("too_bright", measured, limit, {Language.EN: en, Language.ID: ind})


def _issue_too_blurry(measured: float, limit: float) -> QualityIssue:
    value, bound = _shown(measured, low=True, decimals=2), _shown(limit, low=False, decimals=2)
    en = (
        f"The photo is too blurry (sharpness {value}, needs at least {bound}). Retake it "
        "holding the phone steady with both hands, tap the lesion on the screen to focus, "
        "and keep the camera at least 10 cm from the skin."
    )
    ind = (
        f"Foto terlalu buram (ketajaman {_id_number(value)}, minimal {_id_number(bound)}). "
        "Ambil ulang sambil memegang ponsel dengan stabil memakai dua tangan, ketuk lesi "
        "pada layar agar fokus, dan jaga jarak kamera minimal 10 cm dari kulit."
    )
    return QualityIssue("too_blurry", measured, limit, {Language.EN: en, Language.ID: ind})


def check_quality(
    image: PreparedImage, settings: QualitySettings | None = None
) -> list[QualityIssue]:
    """Reasons the photo is unusable, in the order small, dark, bright, blurry; [] = usable.

    * too_small: min(source_width, source_height) < ``min_source_side`` (the original
      photo: a small photo upscaled by ``prepare_image`` has no real detail).
    * too_dark / too_bright: mean luma B (``mean_luma``) outside
      [``min_brightness``, ``max_brightness``].
    * too_blurry: Laplacian variance S (``laplacian_variance``) < ``min_sharpness``.

    Brightness and sharpness are measured on the prepared image (~0.2-0.4 MP), so they do
    not depend on the camera's resolution. Every check runs, so a dark photo may also be
    reported as blurry: underexposure flattens detail too. Pure; about 2 ms for 0.4 MP.
    """
    settings = settings or QualitySettings()
    issues: list[QualityIssue] = []
    shorter = min(image.source_width, image.source_height)
    if shorter < settings.min_source_side:
        issues.append(_issue_too_small(shorter, settings.min_source_side))
    luma = _luma(image)
    brightness = mean_luma(luma)
    if brightness < settings.min_brightness:
        issues.append(_issue_too_dark(brightness, settings.min_brightness))
    elif brightness > settings.max_brightness:
        issues.append(_issue_too_bright(brightness, settings.max_brightness))
    sharpness = laplacian_variance(luma)
    if sharpness < settings.min_sharpness:
        issues.append(_issue_too_blurry(sharpness, settings.min_sharpness))
    return issues


# --------------------------------------------------------------------------------------
# Red-flag rules
# --------------------------------------------------------------------------------------

#: The texts a clause may search: ClinicalContext fields plus the model's findings text.
RULE_FIELDS = frozenset({"notes", "symptoms", "body_site", "duration", "findings"})
_RULE_ACTIONS = {a.value: a for a in (Action.ROUTINE_REFERRAL, Action.URGENT_REFERRAL)}
_RULE_KEYS = frozenset(
    {"id", "description", "action", "reason", "all_of", "age_min_years", "age_max_years"}
)
_CLAUSE_KEYS = frozenset({"any_terms", "fields", "ignore_terms"})
_RULE_ID = re.compile(r"[a-z0-9_]+")
_WORD = re.compile(r"[^\W\d_]+|\d+")  # runs of letters, runs of digits
_NUMBER = r"\d+(?: \d+)?"  # "2", or "1.5" / "1,5" after normalisation ("1 5")
_MASK = "#"  # replaces an ignored phrase: not a word, so no term can match across it
_MIN_STEM = 3
_MAX_AGE = 120
_DEFAULT_RULES = "data/red_flags.json"
_RULES_VERSION = 1


def normalise_text(text: str) -> str:
    """Matching form of ``text``: NFKD, combining marks dropped, casefolded, split into
    words (runs of letters, runs of digits) joined by single spaces.
    ``"Démam, TINGGI! sejak 3hari"`` -> ``"demam tinggi sejak 3 hari"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(bare.casefold()))


def _term_source(term: str) -> str | None:
    """Regex source matching one term inside normalised text, or None if it is unusable.

    Words are normalised like the text; a ``#`` word matches a number; a final ``*``
    lets the last word continue (at least ``_MIN_STEM`` letters must precede it).
    """
    stem = term.endswith("*")
    body = term[:-1] if stem else term
    if "*" in body:
        return None
    words: list[str | None] = []  # None stands for a number
    for part in re.split(r"(#)", body):
        words.extend([None] if part == "#" else normalise_text(part).split())
    if all(word is None for word in words):
        return None
    last = words[-1]
    if stem and (last is None or len(last) < _MIN_STEM):
        return None
    pieces = [_NUMBER if word is None else re.escape(word) for word in words]
    return " ".join(pieces) + (r"\w*" if stem else "")


def _terms_pattern(terms: Sequence[str]) -> re.Pattern[str]:
    r"""One regex for a term list, whole words only: ``(?<!\S)(?:t1|t2|...)(?!\S)``."""
    sources: set[str] = set()
    for term in terms:
        source = _term_source(term)
        if source is None:
            raise ValueError(f"bad term {term!r}")
        sources.add(source)
    # Longest first, so that the alternation prefers the most specific term.
    alternation = "|".join(sorted(sources, key=len, reverse=True))
    return re.compile(rf"(?<!\S)(?:{alternation})(?!\S)")


@dataclass(frozen=True)
class RedFlagClause:
    """Matches when any term occurs in any of the fields (see the module docstring).

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
        object.__setattr__(self, "pattern", _terms_pattern(self.any_terms))
        ignore = _terms_pattern(self.ignore_terms) if self.ignore_terms else None
        object.__setattr__(self, "ignore_pattern", ignore)

    def matches(self, texts: Mapping[str, Sequence[str]]) -> bool:
        """``texts`` maps a field to its normalised texts (one per symptom)."""
        for name in self.fields:
            for text in texts.get(name, ()):
                masked = (
                    text if self.ignore_pattern is None else self.ignore_pattern.sub(_MASK, text)
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


def _fail(where: str, problem: str) -> ValueError:
    return ValueError(f"red-flag {where}: {problem}")


def _text(value: object, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"{name!r} must be a non-empty string")
    return value.strip()


def _age(value: object, where: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_AGE:
        raise _fail(where, f"{name!r} must be a whole number of years from 0 to {_MAX_AGE}")
    return value


def _term_list(raw: object, where: str, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(where, f"{name!r} must be a non-empty list of terms")
    for term in raw:
        if not isinstance(term, str) or _term_source(term) is None:
            raise _fail(
                where,
                f"bad term {term!r} in {name!r}: a term needs letters or digits; '#' stands "
                f"for a number; '*' is allowed only at its end, after at least {_MIN_STEM} "
                "letters",
            )
    return tuple(raw)


def _clause(raw: object, where: str) -> RedFlagClause:
    if not isinstance(raw, dict):
        raise _fail(where, "a clause must be an object with 'any_terms' and 'fields'")
    unknown = sorted(set(raw) - _CLAUSE_KEYS)
    if unknown:
        raise _fail(where, f"unknown clause key(s) {unknown}")
    terms = _term_list(raw.get("any_terms"), where, "any_terms")
    fields = raw.get("fields")
    if not isinstance(fields, list) or not fields:
        raise _fail(where, f"'fields' must be a non-empty list among {sorted(RULE_FIELDS)}")
    for name in fields:
        if not isinstance(name, str) or name not in RULE_FIELDS:
            raise _fail(where, f"unknown field {name!r}; use {sorted(RULE_FIELDS)}")
    ignore = _term_list(raw["ignore_terms"], where, "ignore_terms") if "ignore_terms" in raw else ()
    return RedFlagClause(
        any_terms=terms,
        fields=tuple(dict.fromkeys(fields)),
        ignore_terms=ignore,
    )


def _group(raw: object, where: str) -> tuple[RedFlagClause, ...]:
    if isinstance(raw, dict) and "any_of" in raw:
        if set(raw) != {"any_of"}:
            raise _fail(where, "an 'any_of' group takes no other keys")
        members = raw["any_of"]
        if not isinstance(members, list) or not members:
            raise _fail(where, "'any_of' must be a non-empty list of clauses")
        return tuple(
            _clause(member, f"{where}, alternative #{number}")
            for number, member in enumerate(members, start=1)
        )
    return (_clause(raw, where),)


def _rule(raw: object, index: int, origin: str) -> RedFlagRule:
    where = f"rule #{index} in {origin}"
    if not isinstance(raw, dict):
        raise _fail(where, "a rule must be a JSON object")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise _fail(where, "'id' must be a non-empty string of a-z, 0-9 and '_'")
    where = f"rule {rule_id!r} in {origin}"
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}")
    description = _text(raw.get("description"), where, "description")
    action_name = raw.get("action", Action.URGENT_REFERRAL.value)
    if not isinstance(action_name, str) or action_name not in _RULE_ACTIONS:
        raise _fail(where, f"bad action {action_name!r}; use one of {sorted(_RULE_ACTIONS)}")
    reason_raw = raw.get("reason")
    if not isinstance(reason_raw, dict) or set(reason_raw) != {lang.value for lang in Language}:
        raise _fail(where, "'reason' must be an object with exactly the keys 'en' and 'id'")
    reason = {
        Language(key): _text(value, where, f"reason.{key}") for key, value in reason_raw.items()
    }
    groups_raw = raw.get("all_of")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise _fail(where, "'all_of' must be a non-empty list of clauses")
    groups = tuple(
        _group(group, f"{where}, clause #{number}")
        for number, group in enumerate(groups_raw, start=1)
    )
    age_min = _age(raw.get("age_min_years"), where, "age_min_years")
    age_max = _age(raw.get("age_max_years"), where, "age_max_years")
    if age_min is not None and age_max is not None and age_min > age_max:
        raise _fail(where, "'age_min_years' exceeds 'age_max_years'")
    return RedFlagRule(
        id=rule_id,
        description=description,
        action=_RULE_ACTIONS[action_name],
        reason=reason,
        all_of=groups,
        age_min_years=age_min,
        age_max_years=age_max,
    )


def load_rules(path: Path | None = None) -> list[RedFlagRule]:
    """Load and validate a rules file (default: the bundled ``data/red_flags.json``).

    The file is ``{"version": 1, "rules": [rule, ...]}``. Raises ``ValueError`` naming the
    rule id (or its position when the id itself is bad) for: an unknown key, an empty or
    missing ``all_of``/``any_terms``/``fields``, an unknown field, a bad action (only
    "urgent referral", the default, and "routine referral"), a ``reason`` without both
    "en" and "id", a bad term, a bad age bound, or a duplicate id; also for a file that is
    not JSON or has another ``version``. ``OSError`` if the file cannot be read.
    """
    if path is None:
        origin = f"edge_server/{_DEFAULT_RULES}"
        content = (
            resources.files("edge_server").joinpath(_DEFAULT_RULES).read_text(encoding="utf-8")
        )
    else:
        origin = str(path)
        content = path.read_text(encoding="utf-8")
    try:
        document = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"red-flag rules {origin}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise ValueError(f"red-flag rules {origin}: expected an object with a 'rules' list")
    if document.get("version", _RULES_VERSION) != _RULES_VERSION:
        raise ValueError(
            f"red-flag rules {origin}: unsupported version {document['version']!r} "
            f"(this build reads version {_RULES_VERSION})"
        )
    rules: list[RedFlagRule] = []
    seen: set[str] = set()
    for index, raw in enumerate(document["rules"], start=1):
        rule = _rule(raw, index, origin)
        if rule.id in seen:
            raise _fail(f"rule {rule.id!r} in {origin}", "duplicate id")
        seen.add(rule.id)
        rules.append(rule)
    return rules


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
