"""Durable local storage primitives shared by every store (cases, outbox, devices, hub).

- ``write_atomic``: temp file in the same folder, fsync, ``os.replace``, fsync the folder:
  a reader sees the old file or the new one, never a torn one, even after a power cut.
- ``connect_sqlite``: WAL journal, ``synchronous=FULL`` (a commit survives power loss),
  foreign keys, a busy timeout, explicit transactions.
- ``immediate_transaction``: one ``BEGIN IMMEDIATE`` write transaction under the caller's
  lock, committed on success and rolled back on any error, so a check-then-write decision
  cannot race another process writing the same file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "connect_sqlite",
    "file_sha256",
    "fsync_dir",
    "immediate_transaction",
    "make_private_dir",
    "write_atomic",
]


def fsync_dir(folder: Path) -> None:
    """Persist entries renamed into ``folder`` (a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file is created with
    ``mode`` (owner-only by default) from its first byte, never widened later."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widen beyond ``mode``
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def connect_sqlite(path: Path, *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """A connection for one owner object (which serialises its use with a lock).

    The busy timeout applies from the first statement on, switching to WAL included. The
    database file is created owner-only (0600) before SQLite opens it, and SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode, so none is ever world-readable.
    """
    _private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():  # left by an older version with a wider mode
            os.chmod(sidecar, 0o600)
    db = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, check_same_thread=False, isolation_level=None
    )
    db.row_factory = sqlite3.Row
    try:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        db.close()
        raise
    return db


def make_private_dir(path: Path) -> None:
    """``mkdir -p`` where every folder it creates (parents included) is 0700."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # the umask may have narrowed it; keep it exactly 0700


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; narrow an existing one to 0600."""
    if str(path) == ":memory:":
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


@contextmanager
def immediate_transaction(
    db: sqlite3.Connection, lock: AbstractContextManager[Any]
) -> Iterator[sqlite3.Connection]:
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
