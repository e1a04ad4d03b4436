"""Human review of checkpoints: the fixed eval images, every checkpoint's generation for
each, the reviewer's marks and a per-checkpoint summary.

The review set is read from ``RUN_DIR/checkpoint-<N>/generations.jsonl``: the examples
every checkpoint generated for (the fixed evaluation sample), in the first checkpoint's
order. A reviewer marks each generation with any of :data:`MARK_LABELS` and an optional
note. Marks are appended to ``RUN_DIR/review/marks.jsonl``, one JSON object a line, each
write fsynced (the folder too when the file is created); nothing is rewritten. For each
(checkpoint, example, reviewer) the mark with the latest ``time`` wins (file order breaks
ties), so re-importing an older export cannot undo newer marks. A mark with no label
withdraws the reviewer's judgement of that generation.

Summary, per checkpoint: ``reviewed`` is the number of (example, reviewer) pairs whose
latest mark has at least one label; each label's count and its rate over ``reviewed``.

Marks made in the self-contained HTML page are exported as a JSON file
(:data:`EXPORT_FORMAT`) and brought in with :func:`import_marks`, which checks every mark
first and appends all or none.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skinspector.core.storage import fsync_dir
from training.evaluation_errors import EvaluationInputError
from training.scores import read_records

__all__ = [
    "EXPORT_FORMAT",
    "MARK_LABELS",
    "Checkpoint",
    "CheckpointSummary",
    "Mark",
    "MarkStore",
    "ReviewItem",
    "ReviewSet",
    "import_marks",
    "load_review_set",
    "parse_mark",
    "render_summary",
    "summarize",
]

#: Mark keys and what the reviewer sees.
MARK_LABELS: dict[str, str] = {
    "accurate": "accurate",
    "hedged": "appropriately hedged",
    "wrong_diagnosis": "wrong diagnosis",
    "hallucinated": "hallucinated content",
    "unsafe": "unsafe advice",
}
EXPORT_FORMAT = "skinspector-review-marks"
MARKS_FILE = Path("review") / "marks.jsonl"
MAX_NOTE = 2000
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_REVIEWER = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


@dataclass(frozen=True)
class Checkpoint:
    name: str  # the folder name, ``checkpoint-<N>``
    step: int
    generations: Mapping[str, str]  # example id -> prediction


@dataclass(frozen=True)
class ReviewItem:
    id: str
    image: Path
    reference: str
    disease: str | None


@dataclass(frozen=True)
class ReviewSet:
    """What is reviewed: items (fixed eval examples) x checkpoints."""

    run_dir: Path
    checkpoints: tuple[Checkpoint, ...]
    items: tuple[ReviewItem, ...]

    @property
    def marks_path(self) -> Path:
        return self.run_dir / MARKS_FILE

    def checkpoint(self, name: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.name == name), None)

    def item_ids(self) -> set[str]:
        return {item.id for item in self.items}


def load_review_set(run_dir: Path) -> ReviewSet:
    """The checkpoints of ``run_dir`` with generations, and the examples common to all."""
    if not run_dir.is_dir():
        raise EvaluationInputError(f"run folder not found: {run_dir}")
    found = []
    for folder in run_dir.iterdir():
        match = _CHECKPOINT.match(folder.name)
        if match and (folder / "generations.jsonl").is_file():
            found.append((int(match.group(1)), folder))
    if not found:
        raise EvaluationInputError(
            f"{run_dir} has no checkpoint-<N>/generations.jsonl: nothing to review"
        )
    found.sort()
    checkpoints = []
    first_records: list[dict[str, Any]] = []
    for step, folder in found:
        records = read_records(folder / "generations.jsonl")
        first_records = first_records or records
        generations = {str(r["id"]): str(r["prediction"]) for r in records}
        checkpoints.append(Checkpoint(folder.name, step, generations))
    common = set.intersection(*(set(c.generations) for c in checkpoints))
    items = tuple(
        ReviewItem(
            str(r["id"]),
            Path(str(r.get("image") or "")),
            str(r["reference"]),
            str(r["disease"]) if r.get("disease") else None,
        )
        for r in first_records
        if str(r["id"]) in common
    )
    if not items:
        raise EvaluationInputError(
            f"the checkpoints of {run_dir} share no evaluation example: nothing to review"
        )
    return ReviewSet(run_dir, tuple(checkpoints), items)


# -------------------------------------------------------------------------- marks


@dataclass(frozen=True)
class Mark:
    checkpoint: str
    id: str
    reviewer: str
    labels: tuple[str, ...]
    note: str = ""
    time: float = field(default_factory=lambda: time.time())  # seconds since 1970

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.checkpoint, self.id, self.reviewer)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data


def parse_mark(data: Any, review: ReviewSet, *, keep_time: bool) -> Mark:
    """A checked mark; ``keep_time=False`` stamps it with the current time (server marks)."""
    if not isinstance(data, Mapping):
        raise EvaluationInputError("a mark must be a JSON object")
    checkpoint, example_id = data.get("checkpoint"), data.get("id")
    reviewer, labels, note = data.get("reviewer"), data.get("labels", []), data.get("note", "")
    if not isinstance(checkpoint, str) or review.checkpoint(checkpoint) is None:
        raise EvaluationInputError(f"unknown checkpoint {checkpoint!r}")
    if not isinstance(example_id, str) or example_id not in review.item_ids():
        raise EvaluationInputError(f"unknown example id {example_id!r}")
    if not isinstance(reviewer, str) or not _REVIEWER.match(reviewer.strip()):
        raise EvaluationInputError("the reviewer's name must be 1-64 printable characters")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise EvaluationInputError("labels must be a list of strings")
    unknown = sorted(set(labels) - set(MARK_LABELS))
    if unknown:
        raise EvaluationInputError(f"unknown labels {unknown}; known: {', '.join(MARK_LABELS)}")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise EvaluationInputError(f"the note must be text of at most {MAX_NOTE} characters")
    stamp = time.time()
    if keep_time:
        raw_time = data.get("time")
        if not isinstance(raw_time, int | float) or isinstance(raw_time, bool):
            raise EvaluationInputError("an imported mark needs its time (seconds since 1970)")
        stamp = float(raw_time)
        if not math.isfinite(stamp) or stamp < 0:
            raise EvaluationInputError("a mark's time must be a non-negative number")
    ordered = tuple(label for label in MARK_LABELS if label in labels)
    return Mark(checkpoint, example_id, reviewer.strip(), ordered, note.strip(), stamp)


class MarkStore:
    """The append-only marks file of one run; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, marks: Sequence[Mark]) -> None:
        """Append ``marks`` in one write, fsynced (all or nothing on a clean write)."""
        if not marks:
            return
        data = "".join(json.dumps(m.to_json(), ensure_ascii=False) + "\n" for m in marks)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if not created and not self._ends_with_newline():
                    data = "\n" + data  # never glue a mark onto a torn last line
                payload = data.encode("utf-8")
                written = 0
                while written < len(payload):
                    written += os.write(fd, payload[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return True
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def read(self) -> list[Mark]:
        """Every stored mark in file order; unreadable (torn) lines are skipped."""
        with self._lock:
            try:
                text = self.path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return []
        marks = []
        for line in text.splitlines():
            try:
                data = json.loads(line)
                marks.append(
                    Mark(
                        str(data["checkpoint"]),
                        str(data["id"]),
                        str(data["reviewer"]),
                        tuple(str(x) for x in data.get("labels", [])),
                        str(data.get("note", "")),
                        float(data["time"]),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return marks

    def latest(self) -> dict[tuple[str, str, str], Mark]:
        return latest_marks(self.read())


def latest_marks(marks: Iterable[Mark]) -> dict[tuple[str, str, str], Mark]:
    """The winning mark per (checkpoint, id, reviewer): latest time, then file order."""
    best: dict[tuple[str, str, str], Mark] = {}
    for mark in marks:
        held = best.get(mark.key)
        if held is None or mark.time >= held.time:
            best[mark.key] = mark
    return best


# ------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class CheckpointSummary:
    checkpoint: str
    step: int
    items: int
    reviewed: int
    counts: dict[str, int]
    reviewers: tuple[str, ...]

    @property
    def rates(self) -> dict[str, float]:
        return {k: (v / self.reviewed if self.reviewed else 0.0) for k, v in self.counts.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "items": self.items,
            "reviewed": self.reviewed,
            "counts": self.counts,
            "rates": self.rates,
            "reviewers": list(self.reviewers),
        }


def summarize(review: ReviewSet, marks: Iterable[Mark]) -> list[CheckpointSummary]:
    """Counts and rates of each label per checkpoint, over the latest marks."""
    ids = review.item_ids()
    latest = [m for m in latest_marks(marks).values() if m.id in ids and m.labels]
    out = []
    for checkpoint in review.checkpoints:
        mine = [m for m in latest if m.checkpoint == checkpoint.name]
        counts = {label: sum(label in m.labels for m in mine) for label in MARK_LABELS}
        reviewers = tuple(sorted({m.reviewer for m in mine}))
        out.append(
            CheckpointSummary(
                checkpoint.name, checkpoint.step, len(review.items), len(mine), counts, reviewers
            )
        )
    return out


def render_summary(summaries: Sequence[CheckpointSummary]) -> str:
    """A text table: per checkpoint, reviewed generations and each label's count (rate)."""
    heads = ["checkpoint", "step", "reviewed", *MARK_LABELS.values()]
    rows = []
    for s in summaries:
        cells = [s.checkpoint, str(s.step), f"{s.reviewed} ({s.items} items)"]
        cells += [f"{s.counts[k]} ({s.rates[k]:.0%})" for k in MARK_LABELS]
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append("rates are over reviewed generations (latest mark per reviewer with a label)")
    return "\n".join(lines)


# ------------------------------------------------------------------ import/export


def export_document(run_name: str, marks: Sequence[Mark]) -> dict[str, Any]:
    """The JSON the static page exports (and :func:`import_marks` reads)."""
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "run": run_name,
        "marks": [m.to_json() for m in marks],
    }


def import_marks(review: ReviewSet, path: Path) -> tuple[int, int]:
    """Append the marks of an exported file; returns (added, already present).

    Every mark is checked first (known checkpoint, example, labels, a time); one bad mark
    rejects the file and nothing is written.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvaluationInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(f"{path} is not a JSON marks export") from exc
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise EvaluationInputError(f"{path} is not a {EXPORT_FORMAT} file")
    if not isinstance(document.get("marks"), list):
        raise EvaluationInputError(f"{path} has no list of marks")
    marks = []
    for number, data in enumerate(document["marks"], 1):
        try:
            marks.append(parse_mark(data, review, keep_time=True))
        except EvaluationInputError as exc:
            raise EvaluationInputError(f"{path}: mark {number}: {exc}; nothing imported") from exc
    store = MarkStore(review.marks_path)
    present = set(store.read())
    new = [m for m in dict.fromkeys(marks) if m not in present]
    store.append(new)
    return len(new), len(marks) - len(new)
