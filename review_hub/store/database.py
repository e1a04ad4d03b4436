"""The hub database file: its schema, how it is opened, and the plumbing every part of
:class:`~review_hub.store.HubStore` shares (one connection, one lock, a clock).

The connection settings (WAL, ``synchronous=FULL``, foreign keys, busy timeout) are the
shared ones of :func:`skinspector.core.storage.connect_sqlite`; the hub adds a long busy
timeout, because the ``skinspector hub`` CLI writes the same file as the running server,
and mode 0600 on the database and its WAL side files (patient data).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Self

from skinspector.core.errors import InputError, SkinspectorError
from skinspector.core.storage import connect_sqlite, immediate_transaction

__all__ = ["BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "Clock", "StoreBase", "clean_name"]

SCHEMA_VERSION = 1
#: How long a writer waits for another process's write transaction (the CLI, the server).
BUSY_TIMEOUT_MS = 30_000

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
CREATE INDEX IF NOT EXISTS receipts_clinic ON receipts (clinic_id, received_at);
CREATE TABLE IF NOT EXISTS upload_usage (
    clinic_id   TEXT NOT NULL,
    at          REAL NOT NULL,
    bytes       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_usage_clinic ON upload_usage (clinic_id, at);
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

_MAX_NAME = 120

#: Where the store reads the time (tests pass a fake one).
Clock = Callable[[], float]


def clean_name(name: str, what: str) -> str:
    """``name`` with runs of whitespace collapsed; 1-120 characters or InputError."""
    value = " ".join(name.split())
    if not value or len(value) > _MAX_NAME:
        raise InputError(f"the {what} must have 1-{_MAX_NAME} characters")
    return value


def _create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing; tighten an existing file to 0600."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    if os.name == "posix":
        os.chmod(path, 0o600)


def _tighten_side_files(path: Path) -> None:
    """Mode 0600 on the ``-wal`` and ``-shm`` files SQLite made beside ``path``."""
    if os.name != "posix":
        return
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            with contextlib.suppress(OSError):
                os.chmod(side, 0o600)


class StoreBase:
    """One connection to the hub database, guarded by a lock, with the schema in place.

    Thread-safe; also safe to share with other processes (WAL, ``BEGIN IMMEDIATE`` wherever
    a decision is read and then written).
    """

    def __init__(self, path: Path, *, clock: Clock = time.time) -> None:
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create_private_file(path)  # before SQLite creates it with the umask's mode
        self._lock = threading.RLock()
        self._db = connect_sqlite(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
        try:
            self._create_schema()
        except BaseException:
            self._db.close()
            raise
        _tighten_side_files(path)

    def _create_schema(self) -> None:
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SkinspectorError(
                    f"the hub database {self.path} was written by a newer version (schema "
                    f"{version}); upgrade skinspector"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        return immediate_transaction(self._db, self._lock)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())
