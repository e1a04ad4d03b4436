"""Reviews (table ``reviews``): one per case, stored with the envelope already sealed for
the clinic; the autoincrement ``id`` is the cursor of ``GET /api/v1/reviews``."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from review_hub.payloads import ReviewFields
from review_hub.store.database import StoreBase
from skinspector.core.errors import InputError, SkinspectorError

__all__ = ["AlreadyReviewed", "ReviewRecord", "ReviewStore", "StoredReview", "review_from_row"]


class AlreadyReviewed(SkinspectorError):
    """The case has a review already (another reviewer was quicker)."""


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """A review as the review UI shows it."""

    cursor: int
    reviewer: str
    reviewer_name: str
    diagnosis: str
    management: str
    urgency: str
    message: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredReview:
    """A review as the clinic fetches it."""

    cursor: int
    case_id: str
    envelope: bytes


def review_from_row(row: sqlite3.Row) -> ReviewRecord:
    """A ``reviews`` row as a :class:`ReviewRecord`."""
    return ReviewRecord(
        row["id"],
        row["reviewer"],
        row["reviewer_name"],
        row["diagnosis"],
        row["management"],
        row["urgency"],
        row["message"],
        row["created_at"],
    )


class ReviewStore(StoreBase):
    """The review records of :class:`~review_hub.store.HubStore`."""

    def add_review(
        self,
        *,
        case_row: int,
        reviewer: str,
        reviewer_name: str,
        fields: ReviewFields,
        created_at: float,
        envelope_id: str,
        envelope: bytes,
    ) -> int:
        """Store a case's review and take the case out of the queue; returns the cursor.

        Raises :class:`AlreadyReviewed` when the case has a review already.
        """
        with self._write() as db:
            case = db.execute(
                "SELECT clinic_id, reviewed_at FROM cases WHERE id = ?", (case_row,)
            ).fetchone()
            if case is None:
                raise InputError("no such case")
            if case["reviewed_at"] is not None:
                raise AlreadyReviewed("this case has been reviewed already")
            cursor = db.execute(
                "INSERT INTO reviews (case_row, clinic_id, reviewer, reviewer_name, diagnosis, "
                "management, urgency, message, created_at, envelope_id, envelope) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case_row,
                    case["clinic_id"],
                    reviewer,
                    reviewer_name,
                    fields.diagnosis,
                    fields.management,
                    fields.urgency,
                    fields.message,
                    created_at,
                    envelope_id,
                    envelope,
                ),
            ).lastrowid
            db.execute("UPDATE cases SET reviewed_at = ? WHERE id = ?", (created_at, case_row))
        assert cursor is not None
        return cursor

    def reviews_for(self, clinic_id: str, after: int, limit: int) -> list[StoredReview]:
        """The clinic's own reviews with a cursor above ``after``, oldest first."""
        rows = self._read(
            "SELECT r.id, c.case_id, r.envelope FROM reviews r JOIN cases c ON c.id = r.case_row "
            "WHERE r.clinic_id = ? AND c.clinic_id = ? AND r.id > ? ORDER BY r.id LIMIT ?",
            (clinic_id, clinic_id, after, limit),
        )
        return [StoredReview(row["id"], row["case_id"], bytes(row["envelope"])) for row in rows]
