"""The case store: SQLite (WAL, synchronous=FULL) for records, files for photos.

Durability contract: ``create_case`` returns only after every photo is on disk (written to
a temporary file, fsynced, renamed into place, directory fsynced) and the case row is
committed. A crash before the commit leaves at most a photo directory without a row;
``recover()`` removes those at start-up, so a half-stored case is never visible. A crash
after the commit loses nothing: unfinished analyses are re-queued by the server.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from skinspector.core.case_schema import ClinicalContext
from skinspector.core.imaging import DecodePool
from skinspector.core.storage import (
    connect_sqlite,
    fsync_dir,
    immediate_transaction,
    make_private_dir,
    write_atomic,
)

__all__ = ["CaseRecord", "CaseStatus", "CaseStore", "NewPhoto", "PhotoRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL,
    device_id TEXT,
    context TEXT NOT NULL,
    result TEXT,
    error TEXT,
    review TEXT
);
CREATE TABLE IF NOT EXISTS photos (
    case_id TEXT NOT NULL REFERENCES cases(id),
    idx INTEGER NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (case_id, idx)
);
CREATE INDEX IF NOT EXISTS cases_status ON cases(status);
CREATE TABLE IF NOT EXISTS case_keys (
    device_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(id),
    PRIMARY KEY (device_id, idempotency_key)
);
"""


class CaseStatus(StrEnum):
    QUEUED = "queued"
    ANALYSING = "analysing"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"  # the photo quality gate refused every photo

    @property
    def finished(self) -> bool:
        return self in (CaseStatus.DONE, CaseStatus.FAILED, CaseStatus.REJECTED)


@dataclass(frozen=True, slots=True)
class PhotoRecord:
    index: int
    file: str
    sha256: str
    width: int
    height: int
    bytes: int


@dataclass(slots=True)
class CaseRecord:
    id: str
    seq: int
    created_at: float
    updated_at: float
    status: CaseStatus
    device_id: str | None
    context: ClinicalContext
    photos: list[PhotoRecord] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    review: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The API representation (no file paths)."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status.value,
            "context": self.context.model_dump(mode="json"),
            "photos": [
                {"index": p.index, "width": p.width, "height": p.height, "sha256": p.sha256}
                for p in self.photos
            ],
            "result": self.result,
            "error": self.error,
            "review": self.review,
        }


@dataclass(frozen=True, slots=True)
class NewPhoto:
    jpeg: bytes
    sha256: str
    width: int
    height: int


class _Duplicate(Exception):
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id


class CaseStore:
    """Thread-safe: one connection behind a lock; call it from worker threads."""

    def __init__(self, data_dir: Path, decoder: DecodePool | None = None) -> None:
        self.data_dir = data_dir
        #: Decodes uploaded photos on threads of its own, within a memory budget.
        self.decoder = decoder or DecodePool()
        self.photo_root = data_dir / "photos"
        make_private_dir(self.photo_root)  # the data folder too, when it is new
        os.chmod(data_dir, 0o700)
        self.db_path = data_dir / "cases.sqlite3"
        self._lock = threading.Lock()
        self._db = connect_sqlite(self.db_path)
        self._db.executescript(_SCHEMA)
        os.chmod(self.db_path, 0o600)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.decoder.close()

    # ------------------------------------------------------------------ writes

    def case_for_key(self, device_id: str, idempotency_key: str) -> CaseRecord | None:
        """The case a device already created with this idempotency key, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT case_id FROM case_keys WHERE device_id = ? AND idempotency_key = ?",
                (device_id, idempotency_key),
            ).fetchone()
        return self.get(row[0]) if row else None

    def create_case(
        self,
        context: ClinicalContext,
        photos: Sequence[NewPhoto],
        device_id: str | None,
        idempotency_key: str | None = None,
    ) -> CaseRecord:
        """Store photos durably, then commit the row. Returns only when both are on disk.

        With an ``idempotency_key`` (per device), a repeat of an earlier request returns the
        case that request created instead of storing a second one.
        """
        case_id = uuid.uuid4().hex
        folder = self.photo_root / case_id
        folder.mkdir(mode=0o700)
        fsync_dir(self.photo_root)
        records = []
        try:
            for index, photo in enumerate(photos):
                name = f"{index}.jpg"
                write_atomic(folder / name, photo.jpeg)
                records.append(
                    PhotoRecord(
                        index, name, photo.sha256, photo.width, photo.height, len(photo.jpeg)
                    )
                )
            now = time.time()
            with self._transaction() as db:
                if idempotency_key is not None and device_id is not None:
                    earlier = db.execute(
                        "SELECT case_id FROM case_keys WHERE device_id = ? AND idempotency_key = ?",
                        (device_id, idempotency_key),
                    ).fetchone()
                    if earlier is not None:
                        raise _Duplicate(earlier[0])
                seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM cases").fetchone()[0]
                db.execute(
                    "INSERT INTO cases (id, seq, created_at, updated_at, status, device_id, "
                    "context) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        case_id,
                        seq,
                        now,
                        now,
                        CaseStatus.QUEUED.value,
                        device_id,
                        context.model_dump_json(),
                    ),
                )
                db.executemany(
                    "INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (case_id, p.index, p.file, p.sha256, p.width, p.height, p.bytes)
                        for p in records
                    ],
                )
                if idempotency_key is not None and device_id is not None:
                    db.execute(
                        "INSERT INTO case_keys VALUES (?, ?, ?)",
                        (device_id, idempotency_key, case_id),
                    )
        except _Duplicate as duplicate:  # a concurrent retry won the race: keep its case
            shutil.rmtree(folder, ignore_errors=True)
            existing = self.get(duplicate.case_id)
            if existing is None:
                raise RuntimeError("idempotency key points to a missing case") from None
            return existing
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return CaseRecord(case_id, seq, now, now, CaseStatus.QUEUED, device_id, context, records)

    def set_status(
        self,
        case_id: str,
        status: CaseStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE cases SET status = ?, updated_at = ?, result = COALESCE(?, result), "
                "error = ? WHERE id = ?",
                (
                    status.value,
                    time.time(),
                    json.dumps(result) if result is not None else None,
                    error,
                    case_id,
                ),
            )

    def set_review(self, case_id: str, review: dict[str, Any]) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE cases SET review = ?, updated_at = ? WHERE id = ?",
                (json.dumps(review), time.time(), case_id),
            )
            return cursor.rowcount == 1

    # ------------------------------------------------------------------ reads

    def _record(self, row: sqlite3.Row, photos: list[PhotoRecord]) -> CaseRecord:
        return CaseRecord(
            id=row["id"],
            seq=row["seq"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            status=CaseStatus(row["status"]),
            device_id=row["device_id"],
            context=ClinicalContext.model_validate_json(row["context"]),
            photos=photos,
            result=json.loads(row["result"]) if row["result"] else None,
            error=row["error"],
            review=json.loads(row["review"]) if row["review"] else None,
        )

    def _photos(self, case_ids: Sequence[str]) -> dict[str, list[PhotoRecord]]:
        found: dict[str, list[PhotoRecord]] = {case_id: [] for case_id in case_ids}
        if not case_ids:
            return found
        marks = ",".join("?" * len(case_ids))
        rows = self._db.execute(
            f"SELECT * FROM photos WHERE case_id IN ({marks}) ORDER BY case_id, idx",  # noqa: S608
            list(case_ids),
        ).fetchall()
        for r in rows:
            found[r["case_id"]].append(
                PhotoRecord(r["idx"], r["file"], r["sha256"], r["width"], r["height"], r["bytes"])
            )
        return found

    def get(self, case_id: str) -> CaseRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                return None
            return self._record(row, self._photos([case_id])[case_id])

    def list_cases(
        self, limit: int = 20, before_seq: int | None = None, device_id: str | None = None
    ) -> list[CaseRecord]:
        """Newest first; page with ``before_seq`` = the last ``seq`` of the previous page.
        With ``device_id``: only the cases that device created."""
        before = before_seq if before_seq is not None else 2**62
        with self._lock:
            if device_id is None:
                rows = self._db.execute(
                    "SELECT * FROM cases WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                    (before, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM cases WHERE seq < ? AND device_id = ? ORDER BY seq DESC LIMIT ?",
                    (before, device_id, limit),
                ).fetchall()
            photos = self._photos([r["id"] for r in rows])
            return [self._record(r, photos[r["id"]]) for r in rows]

    def case_ids(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM cases ORDER BY seq")]

    def unfinished(self) -> list[str]:
        """Cases whose analysis has not ended, oldest first (to resume after a restart)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM cases WHERE status IN (?, ?) ORDER BY seq",
                (CaseStatus.QUEUED.value, CaseStatus.ANALYSING.value),
            ).fetchall()
        return [r["id"] for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM cases GROUP BY status").fetchall()
        counts = {status.value: 0 for status in CaseStatus}
        counts.update({row[0]: row[1] for row in rows})
        return counts

    def photo_path(self, case: CaseRecord, index: int) -> Path | None:
        for photo in case.photos:
            if photo.index == index:
                return self.photo_root / case.id / photo.file
        return None

    # ------------------------------------------------------------------ maintenance

    def recover(self) -> int:
        """Remove photo folders and temp files that no committed case owns."""
        with self._lock:
            known = {row[0] for row in self._db.execute("SELECT id FROM cases")}
        removed = 0
        for folder in self.photo_root.iterdir():
            if folder.is_dir() and folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
            elif folder.is_dir():
                for leftover in folder.glob(".*.tmp"):
                    leftover.unlink(missing_ok=True)
        return removed
