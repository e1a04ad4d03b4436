"""A synthetic dataset in SkinCAP's layout, for tests, the demo and CI (no patient data).

``write_synthetic_skincap`` writes ``skincap_v240623.csv`` and ``skincap/{id}.png`` with
the columns the loader uses, a caption per image built from a few templates (so that a
model can learn something in a few dozen steps), and optionally the awkward rows real data
has: one flagged "Do not consider this image", one whose image is missing, and planted
near-duplicates (a resized re-encoded copy of an earlier photo under a new id, or a row
naming the same original file), as Fitzpatrick17k-derived data has.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from skinspector.core.samples import lesion_photo
from training.data import (
    CAPTION_COLUMN,
    CSV_NAME,
    DISEASE_COLUMN,
    EXCLUDE_COLUMN,
    FILE_COLUMN,
    ID_COLUMN,
    IMAGE_DIR,
    ORIGINAL_COLUMN,
)

__all__ = ["SyntheticDataset", "write_synthetic_skincap"]

_DISEASES = ("psoriasis", "basal cell carcinoma", "melanoma", "lichen planus")
_CAPTIONS = (
    "The image shows a {colour} plaque with a {border} border on the {site}, "
    "consistent with {disease}.",
    "A {colour} lesion with {border} edges is seen on the {site}; the appearance "
    "suggests {disease}.",
)
_COLOURS = ("dark brown", "reddish", "pink", "violaceous")
_BORDERS = ("irregular", "well-defined", "raised")
_SITES = ("forearm", "back", "cheek", "shin")


@dataclass(frozen=True, slots=True)
class SyntheticDataset:
    root: Path
    usable: int
    flagged_ids: tuple[str, ...]
    missing_image_ids: tuple[str, ...]
    #: (original id, planted duplicate id) pairs.
    duplicate_pairs: tuple[tuple[str, str], ...] = ()


def write_synthetic_skincap(
    root: Path,
    n: int = 16,
    *,
    seed: int = 0,
    size: tuple[int, int] = (224, 168),
    flagged: int = 1,
    missing_images: int = 1,
    duplicates: int = 0,
) -> SyntheticDataset:
    """``n`` usable rows plus ``flagged`` flagged rows and ``missing_images`` rows whose
    image file does not exist, then ``duplicates`` usable rows that duplicate rows 1, 2, ...:
    odd ones a resized JPEG copy of that row's photo, even ones a new photo that names the
    same original file."""
    rng = random.Random(seed)  # noqa: S311 - synthetic captions, not security
    images = root / IMAGE_DIR
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    total = n + flagged + missing_images
    flagged_ids, missing_ids = [], []
    for index in range(total):
        example_id = str(index + 1)
        disease = _DISEASES[index % len(_DISEASES)]
        caption = rng.choice(_CAPTIONS).format(
            colour=rng.choice(_COLOURS),
            border=rng.choice(_BORDERS),
            site=rng.choice(_SITES),
            disease=disease,
        )
        exclude = ""
        if index >= n and index < n + flagged:
            exclude = "1"
            flagged_ids.append(example_id)
        file_name = f"{example_id}.png"
        if index >= n + flagged:
            missing_ids.append(example_id)
        else:
            photo = lesion_photo(*size, seed=seed * 1000 + index, with_gps=False)
            Image.open(io.BytesIO(photo)).convert("RGB").save(images / file_name, format="PNG")
        rows.append(
            {
                ID_COLUMN: example_id,
                FILE_COLUMN: file_name,
                ORIGINAL_COLUMN: f"fitzpatrick17k/{example_id}.jpg",
                "caption_zh": "",
                CAPTION_COLUMN: caption,
                DISEASE_COLUMN: disease,
                EXCLUDE_COLUMN: exclude,
            }
        )
    pairs = []
    for number in range(duplicates):
        original = rows[number % n]
        example_id = str(total + number + 1)
        file_name = f"{example_id}.png"
        if number % 2 == 0:  # the same pixels, resized and re-encoded
            with Image.open(images / original[FILE_COLUMN]) as source:
                copy = source.resize((size[0] * 4 // 5, size[1] * 4 // 5))
                buffer = io.BytesIO()
                copy.save(buffer, format="JPEG", quality=70)
            Image.open(buffer).convert("RGB").save(images / file_name, format="PNG")
            source_path = f"ddi/{example_id}.jpg"
        else:  # another crop of the same original file
            photo = lesion_photo(*size, seed=seed * 1000 + 500 + number, with_gps=False)
            Image.open(io.BytesIO(photo)).convert("RGB").save(images / file_name, format="PNG")
            source_path = original[ORIGINAL_COLUMN]
        rows.append(
            {
                **original,
                ID_COLUMN: example_id,
                FILE_COLUMN: file_name,
                ORIGINAL_COLUMN: source_path,
                EXCLUDE_COLUMN: "",
            }
        )
        pairs.append((original[ID_COLUMN], example_id))
    with (root / CSV_NAME).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return SyntheticDataset(
        root, n + duplicates, tuple(flagged_ids), tuple(missing_ids), tuple(pairs)
    )
