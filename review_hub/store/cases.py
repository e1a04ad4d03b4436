"""Cases, their photos and envelope receipts (tables ``cases``, ``photos``, ``receipts``).

A case is stored with all its photos or not at all (one transaction, photos as BLOBs in the
same file), and every envelope digest ever accepted is kept, so a retry or a replay of any
earlier envelope is recognised and changes nothing.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from review_hub.payloads import CasePayload
from review_hub.store.database import StoreBase
from review_hub.store.reviews import ReviewRecord, review_from_row
from skinspector.core.errors import InputError

__all__ = [
    "CaseDetail",
    "CaseStore",
    "EnvelopeIdReused",
    "IngestResult",
    "PhotoInfo",
    "QueueItem",
]


class EnvelopeIdReused(InputError):
    """An envelope id already names another case's envelope."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What storing one case envelope did."""

    ack: str
    envelope_id: str
    case_id: str
    case_key: str
    created: bool  # a new case row
    applied: bool  # the envelope's payload is now the case's payload


@dataclass(frozen=True, slots=True)
class QueueItem:
    key: str
    clinic_id: str
    clinic_name: str
    case_id: str
    received_at: float
    urgency_rank: int
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PhotoInfo:
    index: int
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class CaseDetail:
    row: int
    key: str
    clinic_id: str
    clinic_name: str
    clinic_active: bool
    case_id: str
    received_at: float
    updated_at: float
    reviewed_at: float | None
    document: dict[str, Any]
    photos: tuple[PhotoInfo, ...]
    review: ReviewRecord | None


def _put_photos(db: sqlite3.Connection, row: int, case: CasePayload) -> None:
    db.executemany(
        "INSERT INTO photos (case_row, idx, sha256, jpeg) VALUES (?, ?, ?, ?)",
        [(row, p.index, p.sha256, p.jpeg) for p in case.photos],
    )


class CaseStore(StoreBase):
    """The case records of :class:`~review_hub.store.HubStore`."""

    def receipt(self, digest: str) -> IngestResult | None:
        """The earlier acceptance of the envelope with this digest, if any."""
        rows = self._read(
            "SELECT r.digest, r.envelope_id, r.applied, c.case_id, c.key FROM receipts r "
            "JOIN cases c ON c.id = r.case_row WHERE r.digest = ?",
            (digest,),
        )
        if not rows:
            return None
        row = rows[0]
        return IngestResult(
            row["digest"],
            row["envelope_id"],
            row["case_id"],
            row["key"],
            False,
            bool(row["applied"]),
        )

    def ingest_case(
        self,
        *,
        clinic_id: str,
        digest: str,
        envelope_id: str,
        envelope_created_at: float,
        case: CasePayload,
    ) -> IngestResult:
        """Store a verified case envelope, idempotently.

        * digest already accepted: nothing changes, the earlier result is returned;
        * new (clinic, case_id): a new case with its photos;
        * known (clinic, case_id), envelope at least as new (sender's ``created_at``) as
          the one in effect: the case's document and photos are replaced (a re-send with a
          newer AI result); review state is kept;
        * known case, older envelope (a delayed earlier send): acknowledged, not applied.

        Raises :class:`EnvelopeIdReused` when ``envelope_id`` already names an envelope of
        another case.
        """
        now = self._clock()
        with self._write() as db:
            seen = db.execute(
                "SELECT r.envelope_id, r.applied, c.case_id, c.key FROM receipts r "
                "JOIN cases c ON c.id = r.case_row WHERE r.digest = ?",
                (digest,),
            ).fetchone()
            if seen is not None:
                return IngestResult(
                    digest,
                    seen["envelope_id"],
                    seen["case_id"],
                    seen["key"],
                    False,
                    bool(seen["applied"]),
                )
            existing = db.execute(
                "SELECT id, key, envelope_created_at FROM cases "
                "WHERE clinic_id = ? AND case_id = ?",
                (clinic_id, case.case_id),
            ).fetchone()
            clash = db.execute(
                "SELECT case_row FROM receipts WHERE envelope_id = ? "
                "AND (clinic_id != ? OR case_row != ?) LIMIT 1",
                (envelope_id, clinic_id, existing["id"] if existing is not None else -1),
            ).fetchone()
            if clash is not None:
                raise EnvelopeIdReused(
                    f"envelope id {envelope_id} was already used for another case"
                )
            if existing is None:
                key = secrets.token_hex(16)
                row = db.execute(
                    "INSERT INTO cases (key, clinic_id, case_id, envelope_id, digest, "
                    "envelope_created_at, received_at, updated_at, payload, urgency_rank) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        clinic_id,
                        case.case_id,
                        envelope_id,
                        digest,
                        envelope_created_at,
                        now,
                        now,
                        case.document_json(),
                        case.urgency_rank,
                    ),
                ).lastrowid
                assert row is not None
                _put_photos(db, row, case)
                created, applied = True, True
            else:
                row, key = int(existing["id"]), str(existing["key"])
                created = False
                applied = envelope_created_at >= float(existing["envelope_created_at"])
                if applied:
                    db.execute(
                        "UPDATE cases SET envelope_id = ?, digest = ?, envelope_created_at = ?, "
                        "updated_at = ?, payload = ?, urgency_rank = ? WHERE id = ?",
                        (
                            envelope_id,
                            digest,
                            envelope_created_at,
                            now,
                            case.document_json(),
                            case.urgency_rank,
                            row,
                        ),
                    )
                    db.execute("DELETE FROM photos WHERE case_row = ?", (row,))
                    _put_photos(db, row, case)
            db.execute(
                "INSERT INTO receipts (digest, clinic_id, envelope_id, case_row, received_at, "
                "applied) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, clinic_id, envelope_id, row, now, int(applied)),
            )
        return IngestResult(digest, envelope_id, case.case_id, key, created, applied)

    def queue(self, limit: int = 500, offset: int = 0) -> list[QueueItem]:
        """Unreviewed cases, a page at a time: most urgent AI action first; within one
        urgency the clinics take turns (each clinic's oldest case, then each clinic's
        second oldest, ...), so a clinic sending hundreds of cases cannot push every other
        clinic's cases off the first pages."""
        rows = self._read(
            "SELECT * FROM (SELECT c.id, c.key, c.clinic_id, k.name, c.case_id, "
            "c.received_at, c.urgency_rank, c.payload, ROW_NUMBER() OVER ("
            "PARTITION BY c.clinic_id, c.urgency_rank ORDER BY c.received_at, c.id) AS turn "
            "FROM cases c JOIN clinics k ON k.party_id = c.clinic_id "
            "WHERE c.reviewed_at IS NULL) "
            "ORDER BY urgency_rank DESC, turn ASC, received_at ASC, id ASC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [
            QueueItem(
                row["key"],
                row["clinic_id"],
                row["name"],
                row["case_id"],
                row["received_at"],
                row["urgency_rank"],
                json.loads(row["payload"]),
            )
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        """Number of cases, unreviewed cases, reviews and receipts (tests, health)."""
        names = {
            "cases": "SELECT COUNT(*) FROM cases",
            "unreviewed": "SELECT COUNT(*) FROM cases WHERE reviewed_at IS NULL",
            "reviews": "SELECT COUNT(*) FROM reviews",
            "receipts": "SELECT COUNT(*) FROM receipts",
            "photos": "SELECT COUNT(*) FROM photos",
        }
        with self._lock:
            return {k: int(self._db.execute(q).fetchone()[0]) for k, q in names.items()}

    def get_case(self, key: str) -> CaseDetail | None:
        rows = self._read(
            "SELECT c.*, k.name AS clinic_name, k.revoked_at AS clinic_revoked FROM cases c "
            "JOIN clinics k ON k.party_id = c.clinic_id WHERE c.key = ?",
            (key,),
        )
        if not rows:
            return None
        row = rows[0]
        photos = tuple(
            PhotoInfo(p["idx"], p["sha256"], p["size"])
            for p in self._read(
                "SELECT idx, sha256, length(jpeg) AS size FROM photos WHERE case_row = ? "
                "ORDER BY idx",
                (row["id"],),
            )
        )
        reviews = self._read("SELECT * FROM reviews WHERE case_row = ?", (row["id"],))
        review = review_from_row(reviews[0]) if reviews else None
        return CaseDetail(
            row["id"],
            row["key"],
            row["clinic_id"],
            row["clinic_name"],
            row["clinic_revoked"] is None,
            row["case_id"],
            row["received_at"],
            row["updated_at"],
            row["reviewed_at"],
            json.loads(row["payload"]),
            photos,
            review,
        )

    def get_photo(self, key: str, index: int) -> bytes | None:
        rows = self._read(
            "SELECT p.jpeg FROM photos p JOIN cases c ON c.id = p.case_row "
            "WHERE c.key = ? AND p.idx = ?",
            (key, index),
        )
        return bytes(rows[0]["jpeg"]) if rows else None
