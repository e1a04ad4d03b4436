"""SkinCAP data: the loader and the deterministic train/eval(/test) split.

SkinCAP as distributed is ``skincap_v240623.csv`` plus the images in ``skincap/``. One row
per image; the columns used here:

- ``id`` (and ``skincap_file_path`` when present: the image's file name in ``skincap/``;
  without it the image is ``skincap/{id}.png``),
- ``caption_zh_polish_en``: the English caption, the training target,
- ``disease``: the label, kept for evaluation (diagnosis match),
- ``ori_file_path`` (when present): the original dataset's file the image came from; two
  rows naming one original are the same photo,
- ``Do not consider this image``: rows flagged here are dropped.

The same columns in a Hugging Face ``datasets`` folder written by ``save_to_disk`` (an
``image`` column instead of files) load too; its images are written once as PNG files into
a cache folder so that every later step (training, evaluation, the review page) works with
files.

The split (train / eval for checkpoint selection / test for the reported numbers, 80/10/10
with seed 42 by default) is computed once and written to a JSON file next to the data (or
wherever the caller says); training, evaluation and later runs read that file, so they all
see the same images even if the CSV changes later. Near-duplicate images (perceptual hash,
or the same original file) form groups that are never split across train/eval/test (see
:mod:`training.duplicates`); the split file lists the groups it found.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from skinspector.core.errors import InputError
from skinspector.core.storage import write_atomic

__all__ = [
    "CAPTION_COLUMN",
    "CSV_NAME",
    "DEFAULT_EVAL_FRACTION",
    "DEFAULT_TEST_FRACTION",
    "DISEASE_COLUMN",
    "EXCLUDE_COLUMN",
    "DataError",
    "EmptySplitError",
    "Example",
    "LoadReport",
    "Split",
    "default_split_file",
    "ensure_split",
    "load_skincap",
    "make_split",
    "select",
]

log = logging.getLogger(__name__)

CSV_NAME = "skincap_v240623.csv"
IMAGE_DIR = "skincap"
ID_COLUMN = "id"
FILE_COLUMN = "skincap_file_path"
CAPTION_COLUMN = "caption_zh_polish_en"
DISEASE_COLUMN = "disease"
EXCLUDE_COLUMN = "Do not consider this image"
ORIGINAL_COLUMN = "ori_file_path"
REQUIRED_COLUMNS = (ID_COLUMN, CAPTION_COLUMN, DISEASE_COLUMN)
SPLIT_FORMAT = 2  # 2: duplicate groups recorded; format 1 files (no groups) still read
DEFAULT_EVAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1

_TRUTHY = {"1", "1.0", "true", "yes", "y", "x", "t"}


class DataError(InputError):
    """The dataset cannot be used as given (missing file or column, nothing loadable)."""


class EmptySplitError(DataError):
    """A split came out empty (too few examples for the fractions asked)."""


@dataclass(frozen=True, slots=True)
class Example:
    """One usable image-caption pair."""

    id: str
    image: Path
    caption: str
    disease: str | None
    source: str | None = None  # the original dataset's file, when the CSV names it


@dataclass(slots=True)
class LoadReport:
    """What the loader kept and why it dropped the rest."""

    source: str
    rows: int = 0
    flagged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)

    def summary(self) -> str:
        reasons = Counter(reason.split(":")[0] for _id, reason in self.skipped)
        parts = [f"{self.rows} rows", f"{self.flagged} flagged 'do not consider'"]
        parts += [f"{count} skipped ({reason})" for reason, count in sorted(reasons.items())]
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "flagged": self.flagged,
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
        }


def _flagged(value: object) -> bool:
    return str(value).strip().lower() in _TRUTHY


def _check_image(path: Path) -> str | None:
    """None when ``path`` is a readable image, else the reason it is not."""
    if not path.is_file():
        return "missing image"
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image: {type(exc).__name__}"
    return None


def _rows_from_csv(data_dir: Path) -> tuple[list[dict[str, Any]], str]:
    candidates = [data_dir / CSV_NAME, *sorted(data_dir.glob("skincap*.csv"))]
    csv_path = next((path for path in candidates if path.is_file()), None)
    if csv_path is None:
        raise DataError(f"{data_dir} has no {CSV_NAME} (and no skincap*.csv)")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise DataError(
                f"{csv_path.name} lacks the column(s) {', '.join(repr(m) for m in missing)}; "
                f"it has: {', '.join(columns) or 'no header'}"
            )
        return list(reader), str(csv_path)


def _is_hf_folder(data_dir: Path) -> bool:
    return (data_dir / "dataset_info.json").is_file() or (data_dir / "dataset_dict.json").is_file()


def _rows_from_hf(data_dir: Path, cache_dir: Path) -> list[dict[str, Any]]:
    """Rows of a ``save_to_disk`` folder, images written once as PNG files."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - the train extra has it
        raise DataError("reading a datasets folder needs the 'datasets' package") from exc
    loaded = datasets.load_from_disk(str(data_dir))
    if isinstance(loaded, datasets.DatasetDict):
        table = datasets.concatenate_datasets([loaded[name] for name in sorted(loaded)])
    else:
        table = loaded
    columns = list(table.column_names)
    missing = [name for name in (*REQUIRED_COLUMNS, "image") if name not in columns]
    if missing:
        raise DataError(
            f"the datasets folder {data_dir} lacks the column(s) "
            f"{', '.join(repr(m) for m in missing)}; it has: {', '.join(columns)}"
        )
    fingerprint = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    image_dir = cache_dir / "skincap-images" / fingerprint
    image_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for record in table:
        row = {key: value for key, value in record.items() if key != "image"}
        safe_id = "".join(ch for ch in str(row[ID_COLUMN]) if ch.isalnum() or ch in "-_.")
        target = image_dir / f"{safe_id or 'row'}.png"
        image = record["image"]
        if not target.is_file() and isinstance(image, Image.Image):
            tmp = target.with_suffix(".tmp.png")
            image.convert("RGB").save(tmp, format="PNG")
            tmp.replace(target)
        row["__image_path"] = str(target) if isinstance(image, Image.Image) else ""
        rows.append(row)
    return rows


def load_skincap(
    data_dir: Path, *, cache_dir: Path | None = None
) -> tuple[list[Example], LoadReport]:
    """All usable examples of the dataset at ``data_dir``, and a report of what was dropped.

    Raises ``DataError`` for a missing CSV or column and when nothing usable remains.
    """
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    if _is_hf_folder(data_dir):
        from skinspector.core.settings import default_cache_dir

        rows = _rows_from_hf(data_dir, cache_dir or default_cache_dir())
        source = f"datasets folder {data_dir}"
    else:
        rows, source = _rows_from_csv(data_dir)
    report = LoadReport(source=source, rows=len(rows))
    examples: list[Example] = []
    seen: set[str] = set()
    for row in rows:
        example_id = str(row.get(ID_COLUMN) or "").strip()
        if not example_id:
            report.skipped.append(("?", "empty id"))
            continue
        if example_id in seen:
            report.skipped.append((example_id, "duplicate id"))
            continue
        seen.add(example_id)
        if _flagged(row.get(EXCLUDE_COLUMN, "")):
            report.flagged += 1
            continue
        caption = str(row.get(CAPTION_COLUMN) or "").strip()
        if not caption:
            report.skipped.append((example_id, "empty caption"))
            continue
        if "__image_path" in row:
            image = Path(row["__image_path"]) if row["__image_path"] else None
        else:
            name = str(row.get(FILE_COLUMN) or "").strip() or f"{example_id}.png"
            image = data_dir / IMAGE_DIR / Path(name).name
        reason = "missing image" if image is None else _check_image(image)
        if reason is not None or image is None:
            report.skipped.append((example_id, reason or "missing image"))
            continue
        disease = str(row.get(DISEASE_COLUMN) or "").strip() or None
        original = str(row.get(ORIGINAL_COLUMN) or "").strip() or None
        examples.append(Example(example_id, image.resolve(), caption, disease, original))
    if report.skipped:
        log.warning("SkinCAP: %s", report.summary())
    if not examples:
        raise DataError(f"no usable examples in {source}: {report.summary()}")
    return examples, report


# ---------------------------------------------------------------------------- split


@dataclass(frozen=True, slots=True)
class Split:
    """Example ids per split, with the parameters that produced them."""

    seed: int
    eval_fraction: float
    test_fraction: float
    train: tuple[str, ...]
    eval: tuple[str, ...]
    test: tuple[str, ...] = ()
    #: Groups of near-duplicate examples (more than one member each), kept on one side.
    duplicate_groups: tuple[tuple[str, ...], ...] = ()

    def ids(self, name: str) -> tuple[str, ...]:
        if name not in ("train", "eval", "test"):
            raise DataError(f"unknown split {name!r}; choose train, eval or test")
        ids: tuple[str, ...] = getattr(self, name)
        if not ids:
            raise EmptySplitError(f"the {name!r} split is empty")
        return ids

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SPLIT_FORMAT,
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "test_fraction": self.test_fraction,
            "train": list(self.train),
            "eval": list(self.eval),
            "test": list(self.test),
            "duplicate_groups": [list(group) for group in self.duplicate_groups],
        }

    def digest(self) -> str:
        """SHA-256 of the split's membership: what a trained model records and checks."""
        canonical = json.dumps(
            {"train": sorted(self.train), "eval": sorted(self.eval), "test": sorted(self.test)},
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def read(cls, path: Path) -> Split:
        try:
            data = json.loads(path.read_text())
            if data.get("format") not in (1, SPLIT_FORMAT):
                raise DataError(f"{path} has split format {data.get('format')!r}")
            return cls(
                seed=int(data["seed"]),
                eval_fraction=float(data["eval_fraction"]),
                test_fraction=float(data["test_fraction"]),
                train=tuple(data["train"]),
                eval=tuple(data["eval"]),
                test=tuple(data.get("test", ())),
                duplicate_groups=tuple(tuple(g) for g in data.get("duplicate_groups", ())),
            )
        except FileNotFoundError as exc:
            raise DataError(f"split file not found: {path}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path} is not a split file: {exc}") from exc

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())


def make_split(
    ids: Sequence[str],
    *,
    seed: int = 42,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    groups: Sequence[Sequence[str]] = (),
) -> Split:
    """Shuffle the groups (sorted, each sorted) with ``seed``; whole groups fill the test
    split up to ``test_fraction`` of the ids, then the eval split up to ``eval_fraction``,
    the rest is train. Ids in no group form a group of their own. Same ids, groups and
    seed: same split, whatever order they came in."""
    if not 0 < eval_fraction < 1 or not 0 <= test_fraction < 1:
        raise DataError("eval_fraction must be in (0, 1) and test_fraction in [0, 1)")
    if eval_fraction + test_fraction >= 1:
        raise DataError("eval_fraction + test_fraction must leave examples for training")
    unique = sorted(set(ids))
    if len(unique) != len(ids):
        raise DataError("example ids are not unique")
    grouped: dict[str, tuple[str, ...]] = {}
    for group in groups:
        members = tuple(sorted(set(group)))
        for member in members:
            if member in grouped:
                raise DataError(f"example {member} is in two duplicate groups")
            grouped[member] = members
    units = sorted({grouped.get(example_id, (example_id,)) for example_id in unique})
    random.Random(seed).shuffle(units)  # noqa: S311 - a reproducible split, not security
    n_test = round(len(unique) * test_fraction)
    n_eval = round(len(unique) * eval_fraction)
    test: list[str] = []
    held: list[str] = []
    train: list[str] = []
    for unit in units:
        if len(test) < n_test:
            test.extend(unit)
        elif len(held) < n_eval:
            held.extend(unit)
        else:
            train.extend(unit)
    split = Split(
        seed=seed,
        eval_fraction=eval_fraction,
        test_fraction=test_fraction,
        test=tuple(test),
        eval=tuple(held),
        train=tuple(train),
        duplicate_groups=tuple(sorted({g for g in grouped.values() if len(g) > 1})),
    )
    for name in ("train", "eval") + (("test",) if test_fraction else ()):
        if not getattr(split, name):
            raise EmptySplitError(
                f"the {name!r} split would be empty with {len(unique)} examples "
                f"(eval {eval_fraction}, test {test_fraction})"
            )
    return split


def default_split_file(data_dir: Path, seed: int = 42) -> Path:
    return data_dir / f"skinspector-split-seed{seed}.json"


def ensure_split(
    examples: Sequence[Example],
    split_file: Path,
    *,
    seed: int = 42,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    max_distance: int | None = None,
    progress: bool = False,
) -> Split:
    """The split in ``split_file``, created from ``examples`` when the file does not exist
    (near-duplicates grouped first, see :func:`training.duplicates.group_duplicates`).

    An existing file wins (later runs see the same images); its ids must still exist.
    """
    if split_file.is_file():
        split = Split.read(split_file)
        known = {example.id for example in examples}
        lost = [i for i in (*split.train, *split.eval, *split.test) if i not in known]
        if lost:
            raise DataError(
                f"{len(lost)} example(s) of {split_file.name} are no longer usable "
                f"(first: {lost[0]}); restore them or write a new split with --new-split"
            )
        return split
    from training.duplicates import DEFAULT_MAX_DISTANCE, group_duplicates

    found = group_duplicates(
        [example.id for example in examples],
        [example.image for example in examples],
        [example.source for example in examples],
        max_distance=DEFAULT_MAX_DISTANCE if max_distance is None else max_distance,
        progress=progress,
    )
    split = make_split(
        [example.id for example in examples],
        seed=seed,
        eval_fraction=eval_fraction,
        test_fraction=test_fraction,
        groups=found.duplicates,
    )
    split.write(split_file)
    return split


def select(examples: Sequence[Example], ids: Sequence[str]) -> list[Example]:
    """The examples with ``ids``, in the order of ``ids``."""
    by_id = {example.id: example for example in examples}
    return [by_id[i] for i in ids]
