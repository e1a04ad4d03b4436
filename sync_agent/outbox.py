"""The clinic's outbox: which cases must reach the hub, and what happened to each.

It lives in the edge's SQLite file (its own tables, its own connection). A case enters once
stored; its envelope is sealed once and kept (so every retry sends the same bytes and the
hub can deduplicate); it leaves the queue only when the hub's acknowledgement names that
envelope's SHA-256; it becomes ``reviewed`` when the dermatologist's review is attached.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from skinspector.core.storage import (
    connect_sqlite,
    immediate_transaction,
    make_private_dir,
    write_atomic,
)

__all__ = ["Outbox", "OutboxEntry", "OutboxState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_outbox (
    case_id TEXT PRIMARY KEY,
    enqueued_at REAL NOT NULL,
    state TEXT NOT NULL,
    envelope_id TEXT,
    envelope_digest TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    sent_at REAL,
    reviewed_at REAL
);
CREATE INDEX IF NOT EXISTS sync_outbox_due ON sync_outbox(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS sync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_reviews_set_aside (
    cursor INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class OutboxState(StrEnum):
    QUEUED = "queued"  # waiting to be sent (or re-sent)
    SENT = "sent"  # the hub acknowledged this envelope's digest
    REVIEWED = "reviewed"  # the dermatologist's review came back


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    case_id: str
    state: OutboxState
    enqueued_at: float
    envelope_id: str | None
    envelope_digest: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: float
    sent_at: float | None
    reviewed_at: float | None


class Outbox:
    """Thread-safe; every call is one short transaction."""

    def __init__(
        self, db_path: Path, envelope_dir: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self.envelope_dir = envelope_dir
        make_private_dir(envelope_dir)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = connect_sqlite(db_path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _now(self) -> float:
        return float(self._clock())

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db, self._lock)

    @staticmethod
    def _entry(row: sqlite3.Row) -> OutboxEntry:
        return OutboxEntry(
            case_id=row["case_id"],
            state=OutboxState(row["state"]),
            enqueued_at=row["enqueued_at"],
            envelope_id=row["envelope_id"],
            envelope_digest=row["envelope_digest"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            next_attempt_at=row["next_attempt_at"],
            sent_at=row["sent_at"],
            reviewed_at=row["reviewed_at"],
        )

    # ------------------------------------------------------------------ queue

    def enqueue(self, case_id: str) -> None:
        """Add a case (idempotent). A case already sent is queued again to send an update."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT state FROM sync_outbox WHERE case_id = ?", (case_id,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO sync_outbox (case_id, enqueued_at, state) VALUES (?, ?, ?)",
                    (case_id, self._now(), OutboxState.QUEUED.value),
                )
            elif row["state"] == OutboxState.SENT.value:
                db.execute(
                    "UPDATE sync_outbox SET state = ?, envelope_id = NULL, "
                    "envelope_digest = NULL, next_attempt_at = 0 WHERE case_id = ?",
                    (OutboxState.QUEUED.value, case_id),
                )

    def enqueue_missing(self, case_ids: list[str]) -> int:
        """Queue cases the outbox has never seen (e.g. stored just before a crash)."""
        now = self._now()
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO sync_outbox (case_id, enqueued_at, state) VALUES (?, ?, ?)",
                [(case_id, now, OutboxState.QUEUED.value) for case_id in case_ids],
            )
            return db.total_changes - before

    def due(self, limit: int = 20) -> list[OutboxEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sync_outbox WHERE state = ? AND next_attempt_at <= ? "
                "ORDER BY enqueued_at LIMIT ?",
                (OutboxState.QUEUED.value, self._now(), limit),
            ).fetchall()
        return [self._entry(r) for r in rows]

    def envelope_path(self, case_id: str) -> Path:
        return self.envelope_dir / f"{case_id}.env"

    def attach_envelope(self, case_id: str, envelope_id: str, digest: str, data: bytes) -> None:
        """Keep the sealed envelope so every retry sends exactly these bytes."""
        write_atomic(self.envelope_path(case_id), data)
        with self._transaction() as db:
            db.execute(
                "UPDATE sync_outbox SET envelope_id = ?, envelope_digest = ? WHERE case_id = ?",
                (envelope_id, digest, case_id),
            )

    def mark_sent(self, case_id: str, acked_digest: str) -> bool:
        """Only an acknowledgement naming our envelope's digest takes a case off the queue."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sync_outbox SET state = ?, sent_at = ?, last_error = NULL "
                "WHERE case_id = ? AND state = ? AND envelope_digest = ?",
                (
                    OutboxState.SENT.value,
                    self._now(),
                    case_id,
                    OutboxState.QUEUED.value,
                    acked_digest,
                ),
            )
            done = cursor.rowcount == 1
        if done:
            self.envelope_path(case_id).unlink(missing_ok=True)
        return done

    def mark_failed(self, case_id: str, error: str, retry_at: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ? WHERE case_id = ?",
                (error, retry_at, case_id),
            )

    def defer(self, case_id: str, retry_at: float) -> None:
        """Not ready to send yet (analysis still running): look again later, no error."""
        with self._transaction() as db:
            db.execute(
                "UPDATE sync_outbox SET next_attempt_at = ? WHERE case_id = ?", (retry_at, case_id)
            )

    def mark_reviewed(self, case_id: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE sync_outbox SET state = ?, reviewed_at = ? WHERE case_id = ?",
                (OutboxState.REVIEWED.value, self._now(), case_id),
            )

    # ------------------------------------------------------------------ reads

    def get(self, case_id: str) -> OutboxEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sync_outbox WHERE case_id = ?", (case_id,)
            ).fetchone()
        return self._entry(row) if row else None

    def entries(self) -> list[OutboxEntry]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM sync_outbox ORDER BY enqueued_at").fetchall()
        return [self._entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM sync_outbox GROUP BY state"
            ).fetchall()
            aside = self._db.execute("SELECT COUNT(*) FROM sync_reviews_set_aside").fetchone()
        counts = {state.value: 0 for state in OutboxState}
        counts.update({row[0]: row[1] for row in rows})
        counts["reviews_set_aside"] = int(aside[0])
        return counts

    def set_aside_review(self, cursor: int, reason: str, review_cursor_key: str) -> None:
        """Record a review from the hub that cannot be used (``reason``: what was wrong,
        never its content) and move the review cursor past it, in one transaction: one bad
        review never stalls the reviews after it, and ``sync status`` counts it."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sync_reviews_set_aside (cursor, reason, at) VALUES (?, ?, ?)",
                (cursor, reason[:200], self._now()),
            )
            db.execute(
                "INSERT INTO sync_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (review_cursor_key, str(cursor)),
            )

    def reviews_set_aside(self) -> list[tuple[int, str, float]]:
        """(cursor, reason, when) of each review set aside, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT cursor, reason, at FROM sync_reviews_set_aside ORDER BY rowid"
            ).fetchall()
        return [(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM sync_meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sync_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
