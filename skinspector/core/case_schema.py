"""The case schema shared by the engine, the edge server, sync and training.

``ClinicalContext`` is what a health worker types beside the photo; ``Assessment`` is the
structured answer the engine returns. Both are pydantic models, so the server validates
requests with them and the sync agent serialises them unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Action",
    "Assessment",
    "ClinicalContext",
    "Language",
    "LikelyCondition",
    "Sex",
]

_SHORT = 120
_LONG = 2000


class Language(StrEnum):
    """Answer language."""

    ID = "id"
    EN = "en"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Action(StrEnum):
    """Recommended action, ordered from least to most urgent."""

    SELF_CARE = "self-care"
    ROUTINE_REFERRAL = "routine referral"
    URGENT_REFERRAL = "urgent referral"

    @property
    def rank(self) -> int:
        return list(Action).index(self)


class ClinicalContext(BaseModel):
    """Optional facts about the patient and the lesion; every field may be omitted."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    age_years: int | None = Field(None, ge=0, le=120, description="Age in whole years.")
    sex: Sex | None = None
    body_site: str | None = Field(None, max_length=_SHORT, description="e.g. 'left forearm'.")
    duration: str | None = Field(None, max_length=_SHORT, description="e.g. '3 weeks'.")
    symptoms: list[str] = Field(default_factory=list, max_length=20)
    notes: str | None = Field(None, max_length=_LONG, description="Free text from the worker.")
    language: Language = Language.EN

    @field_validator("symptoms")
    @classmethod
    def _short_symptoms(cls, value: list[str]) -> list[str]:
        cleaned = [s.strip() for s in value if s.strip()]
        for symptom in cleaned:
            if len(symptom) > _SHORT:
                raise ValueError(f"each symptom must be at most {_SHORT} characters")
        return cleaned


class LikelyCondition(BaseModel):
    name: str
    likelihood: str | None = Field(None, description="As stated by the model, e.g. 'moderate'.")


class Assessment(BaseModel):
    """The structured answer. ``raw_text`` keeps exactly what the model generated."""

    findings: list[str] = Field(default_factory=list)
    likely_conditions: list[LikelyCondition] = Field(default_factory=list)
    red_flags: list[str] = Field(default_factory=list)
    action: Action = Action.ROUTINE_REFERRAL
    action_from_model: bool = Field(
        False,
        description="False when the model stated no usable action and the safe default "
        "(routine referral) was applied.",
    )
    disclaimer: str
    raw_text: str
    complete: bool = Field(
        False, description="True when every section of the output structure was found."
    )
