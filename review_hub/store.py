"""The hub's storage: one SQLite file (WAL, ``synchronous=FULL``, mode 0600).

Tables
------
``clinics``
    Enrolled clinics: ``party_id`` (primary key), display ``name``, the clinic's
    ``PublicIdentity`` JSON, ``enrolled_at``, ``revoked_at`` (NULL while active).
``cases``
    One row per (clinic, case_id): a random ``key`` used in review-UI URLs, the envelope
    (``envelope_id``, ``digest``, both UNIQUE) whose payload is in effect, ``received_at``
    (first arrival, hub clock: the queue's age order), ``updated_at``, the case document
    as JSON **without photo bytes**, ``urgency_rank`` (AI action, for sorting) and
    ``reviewed_at``.
``photos``
    The decoded JPEGs, one BLOB per (case, index). Photos live in the same SQLite file as
    their case, written in the same transaction: a case is stored with all its photos or
    not at all, there are no orphan files to clean up after a crash, and the whole hub is
    backed up by copying one database (``sqlite3 hub.sqlite3 .backup``). Photos are a few
    hundred KiB each; SQLite serves BLOBs of that size efficiently.
``receipts``
    Every envelope digest ever accepted, with the case it went to: a retry or a replay of
    any earlier envelope is recognised by its digest and changes nothing.
``reviews``
    One review per case: the reviewer's fields and the review envelope already sealed for
    the clinic. The autoincrement ``id`` is the cursor of ``GET /api/v1/reviews``.
``reviewers``, ``sessions``, ``login_failures``
    Dermatologist accounts (scrypt hashes), review-UI sessions (SHA-256 of the cookie
    token, per-session CSRF token, absolute expiry) and failed logins (rate limiting).

Concurrency: the server (event-loop thread plus worker threads) and the ``skinspector
hub`` CLI (another process) share the file, hence WAL, a busy timeout, one connection per
:class:`HubStore` guarded by a lock, and ``BEGIN IMMEDIATE`` wherever a decision is read
and then written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from review_hub.passwords import check_password_policy, hash_password
from review_hub.payloads import CasePayload, ReviewFields
from skinspector.core.errors import InputError, SkinspectorError
from skinspector.core.storage import immediate_transaction
from sync_agent.errors import KeyFileError
from sync_agent.keys import PartyKeys, PublicIdentity, generate_keys

__all__ = [
    "AlreadyReviewed",
    "CaseDetail",
    "ClinicRecord",
    "EnrolmentConflict",
    "EnvelopeIdReused",
    "HubStore",
    "IngestResult",
    "InvalidUsername",
    "PhotoInfo",
    "QueueItem",
    "ReviewRecord",
    "ReviewerRecord",
    "SessionRecord",
    "StoredReview",
    "load_or_create_hub_keys",
    "normalise_username",
]

_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clinics (
    party_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    identity_json TEXT NOT NULL,
    enrolled_at   REAL NOT NULL,
    revoked_at    REAL NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    key                 TEXT NOT NULL UNIQUE,
    clinic_id           TEXT NOT NULL REFERENCES clinics(party_id),
    case_id             TEXT NOT NULL,
    envelope_id         TEXT NOT NULL UNIQUE,
    digest              TEXT NOT NULL UNIQUE,
    envelope_created_at REAL NOT NULL,
    received_at         REAL NOT NULL,
    updated_at          REAL NOT NULL,
    payload             TEXT NOT NULL,
    urgency_rank        INTEGER NOT NULL,
    reviewed_at         REAL NULL,
    UNIQUE (clinic_id, case_id)
);
CREATE INDEX IF NOT EXISTS cases_queue ON cases (reviewed_at, urgency_rank, received_at);
CREATE TABLE IF NOT EXISTS photos (
    case_row INTEGER NOT NULL REFERENCES cases(id),
    idx      INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    jpeg     BLOB NOT NULL,
    PRIMARY KEY (case_row, idx)
);
CREATE TABLE IF NOT EXISTS receipts (
    digest      TEXT PRIMARY KEY,
    clinic_id   TEXT NOT NULL,
    envelope_id TEXT NOT NULL,
    case_row    INTEGER NOT NULL REFERENCES cases(id),
    received_at REAL NOT NULL,
    applied     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_envelope ON receipts (envelope_id);
CREATE TABLE IF NOT EXISTS reviews (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    case_row      INTEGER NOT NULL UNIQUE REFERENCES cases(id),
    clinic_id     TEXT NOT NULL,
    reviewer      TEXT NOT NULL,
    reviewer_name TEXT NOT NULL,
    diagnosis     TEXT NOT NULL,
    management    TEXT NOT NULL,
    urgency       TEXT NOT NULL,
    message       TEXT NOT NULL,
    created_at    REAL NOT NULL,
    envelope_id   TEXT NOT NULL UNIQUE,
    envelope      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_clinic ON reviews (clinic_id, id);
CREATE TABLE IF NOT EXISTS reviewers (
    username      TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    REAL NOT NULL,
    disabled_at   REAL NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES reviewers(username),
    csrf_token   TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT NOT NULL,
    client   TEXT NOT NULL,
    at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_user ON login_failures (username, at);
CREATE INDEX IF NOT EXISTS login_failures_client ON login_failures (client, at);
"""

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_MAX_NAME = 120


class EnrolmentConflict(InputError):
    """The clinic cannot be (re-)enrolled as asked."""


class EnvelopeIdReused(InputError):
    """An envelope id already names another case's envelope."""


class AlreadyReviewed(SkinspectorError):
    """The case has a review already (another reviewer was quicker)."""


class InvalidUsername(InputError):
    """A reviewer username outside ``[a-z0-9][a-z0-9._@-]{0,63}``."""


def normalise_username(username: str) -> str:
    """Lower-case, stripped username; raise :class:`InvalidUsername` if not allowed."""
    value = username.strip().lower()
    if not _USERNAME.fullmatch(value):
        raise InvalidUsername(
            "a username is 1-64 characters: letters, digits, '.', '_', '@' or '-'"
        )
    return value


def _clean_name(name: str, what: str) -> str:
    value = " ".join(name.split())
    if not value or len(value) > _MAX_NAME:
        raise InputError(f"the {what} must have 1-{_MAX_NAME} characters")
    return value


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ClinicRecord:
    party_id: str
    name: str
    identity_json: str
    enrolled_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def identity(self) -> PublicIdentity:
        return PublicIdentity.from_json(self.identity_json)


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
class ReviewRecord:
    cursor: int
    reviewer: str
    reviewer_name: str
    diagnosis: str
    management: str
    urgency: str
    message: str
    created_at: float


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


@dataclass(frozen=True, slots=True)
class StoredReview:
    """A review as the clinic fetches it."""

    cursor: int
    case_id: str
    envelope: bytes


@dataclass(frozen=True, slots=True)
class ReviewerRecord:
    username: str
    display_name: str
    password_hash: str
    created_at: float
    disabled_at: float | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    username: str
    display_name: str
    csrf_token: str
    expires_at: float


def _create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing; tighten an existing file to 0600."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    if os.name == "posix":
        os.chmod(path, 0o600)


def load_or_create_hub_keys(path: Path) -> PartyKeys:
    """The hub's own keys: loaded from ``path``, generated there on first use.

    Creation is race-free between processes: the new key file is written under a
    temporary name and hard-linked into place, which fails if another process was first;
    the loser then loads the winner's keys.
    """
    if path.exists():
        return PartyKeys.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    generate_keys().save(temporary)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise KeyFileError(f"cannot create the hub key file {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    return PartyKeys.load(path)


class HubStore:
    """All hub records. Thread-safe; also safe to share with other processes (WAL)."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create_private_file(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > _SCHEMA_VERSION:
                raise SkinspectorError(
                    f"the hub database {path} was written by a newer version (schema "
                    f"{version}); upgrade skinspector"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists() and os.name == "posix":
                with contextlib.suppress(OSError):
                    os.chmod(side, 0o600)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        return immediate_transaction(self._db, self._lock)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    # ------------------------------------------------------------------ clinics

    def enrol_clinic(self, identity: PublicIdentity, name: str) -> tuple[ClinicRecord, bool]:
        """Register a clinic; returns (record, created).

        Enrolling the same identity again renames it (idempotent). A revoked party id
        cannot come back (revocation is for lost or compromised keys: the clinic makes
        new keys, hence a new party id), and a party id cannot change its KEM key here.
        """
        name = _clean_name(name, "clinic name")
        identity_json = identity.to_json()
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM clinics WHERE party_id = ?", (identity.party_id,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO clinics (party_id, name, identity_json, enrolled_at) "
                    "VALUES (?, ?, ?, ?)",
                    (identity.party_id, name, identity_json, now),
                )
                created = True
            else:
                if row["revoked_at"] is not None:
                    raise EnrolmentConflict(
                        f"clinic {identity.party_id} was revoked; revocation is permanent: "
                        "the clinic must generate new keys and enrol again"
                    )
                if PublicIdentity.from_json(row["identity_json"]) != identity:
                    raise EnrolmentConflict(
                        f"clinic {identity.party_id} is enrolled with another KEM key"
                    )
                db.execute(
                    "UPDATE clinics SET name = ? WHERE party_id = ?", (name, identity.party_id)
                )
                created = False
            record = self._clinic_row(
                db.execute(
                    "SELECT * FROM clinics WHERE party_id = ?", (identity.party_id,)
                ).fetchone()
            )
        return record, created

    @staticmethod
    def _clinic_row(row: sqlite3.Row) -> ClinicRecord:
        return ClinicRecord(
            row["party_id"],
            row["name"],
            row["identity_json"],
            row["enrolled_at"],
            row["revoked_at"],
        )

    def revoke_clinic(self, party_id: str) -> bool:
        """Revoke an active clinic at once; False when no active clinic has that id."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE clinics SET revoked_at = ? WHERE party_id = ? AND revoked_at IS NULL",
                (self._clock(), party_id),
            )
            return cursor.rowcount == 1

    def get_clinic(self, party_id: str) -> ClinicRecord | None:
        rows = self._read("SELECT * FROM clinics WHERE party_id = ?", (party_id,))
        return self._clinic_row(rows[0]) if rows else None

    def active_identity(self, party_id: str) -> PublicIdentity | None:
        """The enrolled identity of an active clinic, else None."""
        clinic = self.get_clinic(party_id)
        return clinic.identity() if clinic is not None and clinic.active else None

    def list_clinics(self) -> list[ClinicRecord]:
        rows = self._read("SELECT * FROM clinics ORDER BY enrolled_at, party_id")
        return [self._clinic_row(row) for row in rows]

    # ------------------------------------------------------------------ cases

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
                self._put_photos(db, row, case)
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
                    self._put_photos(db, row, case)
            db.execute(
                "INSERT INTO receipts (digest, clinic_id, envelope_id, case_row, received_at, "
                "applied) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, clinic_id, envelope_id, row, now, int(applied)),
            )
        return IngestResult(digest, envelope_id, case.case_id, key, created, applied)

    @staticmethod
    def _put_photos(db: sqlite3.Connection, row: int, case: CasePayload) -> None:
        db.executemany(
            "INSERT INTO photos (case_row, idx, sha256, jpeg) VALUES (?, ?, ?, ?)",
            [(row, p.index, p.sha256, p.jpeg) for p in case.photos],
        )

    def queue(self, limit: int = 500) -> list[QueueItem]:
        """Unreviewed cases: most urgent AI action first, then oldest first."""
        rows = self._read(
            "SELECT c.key, c.clinic_id, k.name, c.case_id, c.received_at, c.urgency_rank, "
            "c.payload FROM cases c JOIN clinics k ON k.party_id = c.clinic_id "
            "WHERE c.reviewed_at IS NULL "
            "ORDER BY c.urgency_rank DESC, c.received_at ASC, c.id ASC LIMIT ?",
            (limit,),
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
        review = None
        if reviews:
            r = reviews[0]
            review = ReviewRecord(
                r["id"],
                r["reviewer"],
                r["reviewer_name"],
                r["diagnosis"],
                r["management"],
                r["urgency"],
                r["message"],
                r["created_at"],
            )
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

    # ------------------------------------------------------------------ reviews

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

    # ------------------------------------------------------------------ reviewers

    def add_reviewer(self, username: str, display_name: str, password: str) -> ReviewerRecord:
        """Create a reviewer account (the password is checked, then scrypt-hashed)."""
        username = normalise_username(username)
        display_name = _clean_name(display_name, "display name")
        check_password_policy(password)
        password_hash = hash_password(password)
        with self._write() as db:
            if db.execute("SELECT 1 FROM reviewers WHERE username = ?", (username,)).fetchone():
                raise InputError(f"reviewer {username} exists already")
            db.execute(
                "INSERT INTO reviewers (username, display_name, password_hash, created_at) "
                "VALUES (?, ?, ?, ?)",
                (username, display_name, password_hash, self._clock()),
            )
        reviewer = self.get_reviewer(username)
        assert reviewer is not None
        return reviewer

    def get_reviewer(self, username: str) -> ReviewerRecord | None:
        rows = self._read("SELECT * FROM reviewers WHERE username = ?", (username,))
        if not rows:
            return None
        row = rows[0]
        return ReviewerRecord(
            row["username"],
            row["display_name"],
            row["password_hash"],
            row["created_at"],
            row["disabled_at"],
        )

    def set_password_hash(self, username: str, password_hash: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE reviewers SET password_hash = ? WHERE username = ?",
                (password_hash, username),
            )

    # ------------------------------------------------------------------ sessions

    def create_session(self, username: str, ttl_seconds: float) -> tuple[str, SessionRecord]:
        """A new session; returns (cookie token, record). Only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO sessions (token_sha256, username, csrf_token, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?)",
                (_sha256(token), username, csrf, now, now + ttl_seconds),
            )
        session = self.get_session(token)
        assert session is not None
        return token, session

    def get_session(self, token: str) -> SessionRecord | None:
        """The live session of an enabled reviewer for this cookie token, else None."""
        if not token or len(token) > 256:
            return None
        rows = self._read(
            "SELECT s.username, r.display_name, s.csrf_token, s.expires_at FROM sessions s "
            "JOIN reviewers r ON r.username = s.username "
            "WHERE s.token_sha256 = ? AND s.expires_at > ? AND r.disabled_at IS NULL",
            (_sha256(token), self._clock()),
        )
        if not rows:
            return None
        row = rows[0]
        return SessionRecord(
            row["username"], row["display_name"], row["csrf_token"], row["expires_at"]
        )

    def delete_session(self, token: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha256(token),))

    # ------------------------------------------------------------------ login rate limits

    def login_retry_after(
        self, username: str, client: str, *, window: float, max_user: int, max_client: int
    ) -> float | None:
        """Seconds until a login may be tried again, or None when it may be tried now."""
        now = self._clock()
        since = now - window
        waits: list[float] = []
        for column, value, limit in (
            ("username", username, max_user),
            ("client", client, max_client),
        ):
            rows = self._read(
                f"SELECT at FROM login_failures WHERE {column} = ? AND at > ? "  # noqa: S608
                "ORDER BY at DESC LIMIT ?",
                (value, since, limit),
            )
            if len(rows) >= limit:
                oldest_counted = float(rows[-1]["at"])
                waits.append(max(1.0, oldest_counted + window - now))
        return max(waits) if waits else None

    def record_login_failure(self, username: str, client: str, *, window: float) -> None:
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM login_failures WHERE at <= ?", (now - window,))
            db.execute(
                "INSERT INTO login_failures (username, client, at) VALUES (?, ?, ?)",
                (username, client, now),
            )

    def clear_login_failures(self, username: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM login_failures WHERE username = ?", (username,))
