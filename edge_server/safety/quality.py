"""Photo quality gate: rejects photos the model cannot judge, with retake advice.

``check_quality`` is deterministic and independent of the vision-language model: a photo
that is too small, too dark, too bright or too blurry is refused with a reason and retake
advice in English and Bahasa Indonesia, before any model time is spent on it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from skinspector.core.case_schema import Language
from skinspector.core.imaging import PreparedImage

__all__ = [
    "QualityIssue",
    "QualitySettings",
    "check_quality",
    "laplacian_variance",
    "mean_luma",
]


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
