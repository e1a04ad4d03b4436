"""The two JSON payloads the hub handles: the clinic's case and the hub's review.

A **case** (envelope kind ``"case"``, clinic -> hub)::

    {"format": 1, "case_id": "<32 hex>", "created_at": <float>, "context": {...},
     "photos": [{"index": <int>, "sha256": "<64 hex>", "jpeg_b64": "<base64>"}],
     "result": {...} | null, "status": "<str>"}

:func:`parse_case_payload` validates it, decodes the photos (each must be a JPEG whose
SHA-256 matches ``sha256``) and returns them apart from the rest of the document, which
keeps ``{"index", "sha256", "bytes"}`` per photo instead of the base64. The AI ``result``
and ``context`` are kept as given (the clinic's schema may grow): the review UI reads
them defensively.

A **review** (envelope kind ``"review"``, hub -> clinic): :func:`build_review_payload`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skinspector.core.errors import InputError

__all__ = [
    "ACTION_RANKS",
    "MAX_PHOTOS",
    "UNKNOWN_ACTION_RANK",
    "URGENCIES",
    "CasePayload",
    "InvalidCasePayload",
    "ParsedPhoto",
    "ReviewFields",
    "ai_action",
    "build_review_payload",
    "parse_case_payload",
    "urgency_rank",
]

#: Recommended actions, least to most urgent (the review's ``urgency`` uses the same words).
URGENCIES: tuple[str, ...] = ("self-care", "routine referral", "urgent referral")
Urgency = Literal["self-care", "routine referral", "urgent referral"]

#: Queue rank of each AI action (higher = reviewed first).
ACTION_RANKS: dict[str, int] = {name: rank for rank, name in enumerate(URGENCIES)}

#: Rank of a case without a usable AI action (no result, analysis rejected or failed):
#: queued like a routine referral, the engine's own safe default.
UNKNOWN_ACTION_RANK = ACTION_RANKS["routine referral"]

#: Most photos accepted in one case.
MAX_PHOTOS = 20

_JPEG_MAGIC = b"\xff\xd8\xff"


class InvalidCasePayload(InputError):
    """The decrypted case payload is not a valid case document."""


class _PhotoIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    index: int = Field(ge=0, le=1000)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    jpeg_b64: str = Field(min_length=4)


class _CaseIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: Literal[1]
    case_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    created_at: float
    context: dict[str, Any] = Field(default_factory=dict)
    photos: list[_PhotoIn] = Field(default_factory=list, max_length=MAX_PHOTOS)
    result: dict[str, Any] | None = None
    status: str = Field("", max_length=64)

    @field_validator("created_at")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("created_at must be finite")
        return value


@dataclass(frozen=True, slots=True)
class ParsedPhoto:
    """One decoded photo of a case."""

    index: int
    sha256: str
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class CasePayload:
    """A validated case: its document (photos without bytes) and the photos."""

    case_id: str
    created_at: float
    document: dict[str, Any]
    photos: tuple[ParsedPhoto, ...]

    @property
    def urgency_rank(self) -> int:
        return urgency_rank(self.document)

    def document_json(self) -> str:
        return json.dumps(self.document, ensure_ascii=False, separators=(",", ":"))


def ai_action(document: dict[str, Any]) -> str | None:
    """The AI's recommended action in a case document, or None when there is none."""
    result = document.get("result")
    if not isinstance(result, dict):
        return None
    assessment = result.get("assessment")
    if not isinstance(assessment, dict):
        return None
    action = assessment.get("action")
    return action if isinstance(action, str) and action in ACTION_RANKS else None


def urgency_rank(document: dict[str, Any]) -> int:
    """Queue rank of a case document (see :data:`ACTION_RANKS`)."""
    action = ai_action(document)
    return UNKNOWN_ACTION_RANK if action is None else ACTION_RANKS[action]


def _decode_photo(photo: _PhotoIn) -> ParsedPhoto:
    try:
        jpeg = base64.b64decode(photo.jpeg_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidCasePayload(f"photo {photo.index} is not valid base64") from None
    if not jpeg.startswith(_JPEG_MAGIC):
        raise InvalidCasePayload(f"photo {photo.index} is not a JPEG")
    digest = hashlib.sha256(jpeg).hexdigest()
    if digest != photo.sha256.lower():
        raise InvalidCasePayload(f"photo {photo.index} does not match its sha256")
    return ParsedPhoto(photo.index, digest, jpeg)


def parse_case_payload(payload: bytes) -> CasePayload:
    """Validate a decrypted case payload; raise :class:`InvalidCasePayload` if unusable."""
    try:
        raw = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidCasePayload("the case payload is not UTF-8 JSON") from None
    if not isinstance(raw, dict):
        raise InvalidCasePayload("the case payload is not a JSON object")
    try:
        case = _CaseIn.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise InvalidCasePayload(f"invalid case fields: {', '.join(fields)}") from None
    photos = tuple(_decode_photo(p) for p in case.photos)
    if len({p.index for p in photos}) != len(photos):
        raise InvalidCasePayload("two photos have the same index")
    document = dict(raw)
    document["photos"] = [
        {"index": p.index, "sha256": p.sha256, "bytes": len(p.jpeg)} for p in photos
    ]
    return CasePayload(case.case_id, case.created_at, document, photos)


class ReviewFields(BaseModel):
    """What a dermatologist types into the review form (validated)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    diagnosis: str = Field(min_length=1, max_length=500)
    management: str = Field("", max_length=4000)
    urgency: Urgency
    message: str = Field("", max_length=4000)

    @field_validator("diagnosis", "management", "message")
    @classmethod
    def _newlines(cls, value: str) -> str:
        return value.replace("\r\n", "\n").replace("\r", "\n")


def build_review_payload(
    *, case_id: str, reviewer: str, fields: ReviewFields, reviewed_at: float
) -> bytes:
    """The review JSON sealed for the clinic (format 1)."""
    document = {
        "format": 1,
        "case_id": case_id,
        "reviewer": reviewer,
        "diagnosis": fields.diagnosis,
        "management": fields.management,
        "urgency": fields.urgency,
        "message": fields.message,
        "reviewed_at": reviewed_at,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
