"""The device registry: pairing codes and paired devices in one SQLite file.

:class:`DeviceRegistry` stores the pairing codes the box shows
(:mod:`edge_server.pairing`), redeems them for device tokens
(:mod:`edge_server.device_tokens`) under the brute-force limits of
:mod:`edge_server.pairing_limits`, and maps every later request's token back to a
:class:`~edge_server.device_tokens.Device`.

Storage is a SQLite file shared by the aiohttp server (event-loop thread) and the
``skinspector`` CLI (another process) at the same time. The connection comes from
:func:`skinspector.core.storage.connect_sqlite` (WAL, ``synchronous=FULL``, a busy
timeout); transactions are short, and ``BEGIN IMMEDIATE`` is used wherever a decision is
read and then written (redeeming a code, counting failures), so the check and the write
cannot interleave with another writer in this or any other process.

Secrets are never stored in clear: the ``devices`` table holds the SHA-256 of each token
and ``pairing_codes`` the SHA-256 of each code; lookups are by hash. Tokens carry 256 bits
of entropy, so their hash reveals nothing useful. A pairing code has only ~27 bits: its
hash keeps it out of backups, dumps and casual reads, but whoever can read the file while
a code is live could brute-force it offline; codes live five minutes and such a reader
already controls the box, so this is accepted.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from edge_server.device_tokens import (
    Device,
    IssuedDevice,
    issue_device,
    last_seen_is_stale,
    plausible_token,
)
from edge_server.pairing import (
    MAX_CODE_INPUT_LENGTH,
    ExpiredPairingCode,
    InvalidPairingCode,
    PairingCode,
    PairingError,
    PairingRateLimited,
    PairingSettings,
    new_pairing_code,
    normalize_pairing_code,
    validate_device_name,
)
from edge_server.pairing_limits import forget_old_failures, record_failure, retry_after
from skinspector.core.errors import SkinspectorError
from skinspector.core.storage import connect_sqlite, immediate_transaction

__all__ = ["DeviceRegistry"]

# Attempts to draw a code that collides with no live code before giving up.
_CODE_ATTEMPTS = 20

_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    last_seen    REAL NULL,
    revoked_at   REAL NULL
);
CREATE TABLE IF NOT EXISTS pairing_codes (
    code_sha256    TEXT PRIMARY KEY,
    created_at     REAL NOT NULL,
    expires_at     REAL NOT NULL,
    used_at        REAL NULL,
    used_by_device TEXT NULL REFERENCES devices(id)
);
CREATE TABLE IF NOT EXISTS pairing_failures (
    client TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pairing_failures_client_at ON pairing_failures (client, at);
CREATE INDEX IF NOT EXISTS pairing_failures_at ON pairing_failures (at);
"""


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _device_from_row(row: sqlite3.Row) -> Device:
    return Device(
        id=str(row[0]),
        name=str(row[1]),
        created_at=float(row[2]),
        last_seen=None if row[3] is None else float(row[3]),
        revoked_at=None if row[4] is None else float(row[4]),
    )


_DEVICE_COLUMNS = "id, name, created_at, last_seen, revoked_at"


class DeviceRegistry:
    """Pairing codes and device tokens in one SQLite file.

    Thread-safe: one connection per registry, used under a lock. Several registries
    (e.g. the server and a CLI process) may open the same file at once; SQLite's locks,
    ``BEGIN IMMEDIATE`` and the busy timeout order their writes.

    Several pairing codes may be live at once: creating a code does not cancel older
    unexpired ones, so two phones can be paired in parallel and a code shown on one
    screen is not silently killed by someone running ``skinspector pair`` elsewhere.
    Each code is single-use and expires after ``code_ttl_seconds``; the guessing odds
    grow linearly with the number of live codes (see
    :meth:`PairingSettings.worst_case_guess_probability`).

    Every failed redemption (wrong, unknown, already used or expired code) is recorded
    against the client and counted towards both the per-client and the global limit
    (:mod:`edge_server.pairing_limits`).

    ``clock`` returns seconds (as :func:`time.time` does) and is read for every
    timestamp, so tests can move time.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        settings: PairingSettings | None = None,
        clock: Callable[[], float] = time.time,
        *,
        busy_timeout_seconds: float = 10.0,
    ) -> None:
        self.settings = settings if settings is not None else PairingSettings()
        self._clock = clock
        self._path = Path(db_path)
        self._lock = threading.Lock()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if not self._path.exists():
            # Owner-only from the start; SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(self._path, os.O_CREAT | os.O_WRONLY, 0o600))
        # Autocommit (transactions are explicit), usable from any thread (under self._lock).
        self._conn = connect_sqlite(self._path, busy_timeout_ms=int(busy_timeout_seconds * 1000))
        try:
            with self._transaction() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                    conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return self._path

    def close(self) -> None:
        """Close the connection; the registry cannot be used afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DeviceRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, else rolled back."""
        return immediate_transaction(self._conn, self._lock)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for autocommit reads (each statement sees a consistent snapshot)."""
        with self._lock:
            yield self._conn

    # Pairing -------------------------------------------------------------------------

    def create_pairing_code(self) -> PairingCode:
        """Create a single-use code valid for ``code_ttl_seconds``; older codes stay valid.

        A drawn code that matches a live (unexpired) code is redrawn; one that matches
        an expired row reuses that row.
        """
        length = self.settings.code_length
        with self._transaction() as conn:
            now = self._clock()
            expires_at = now + self.settings.code_ttl_seconds
            for _ in range(_CODE_ATTEMPTS):
                code = new_pairing_code(length)
                cursor = conn.execute(
                    "INSERT INTO pairing_codes (code_sha256, created_at, expires_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (code_sha256) DO UPDATE SET "
                    "created_at = excluded.created_at, expires_at = excluded.expires_at, "
                    "used_at = NULL, used_by_device = NULL "
                    "WHERE pairing_codes.expires_at <= ?",
                    (_sha256(code), now, expires_at, now),
                )
                if cursor.rowcount == 1:
                    return PairingCode(code=code, expires_at=expires_at)
        raise SkinspectorError("could not draw an unused pairing code; purge old codes")

    def redeem(self, code: str, device_name: str, client: str) -> IssuedDevice:
        """Trade a pairing code for a new device and its token (returned only here).

        ``client`` identifies the caller for rate limiting (the phone's address).
        Raises :class:`InvalidDeviceName` (no code is consumed, nothing is counted),
        :class:`PairingRateLimited` (the limits are checked before the code),
        :class:`InvalidPairingCode` or :class:`ExpiredPairingCode` (both counted as
        failures). Concurrent redemptions of one code, from any process, yield exactly
        one device.
        """
        name = validate_device_name(device_name)
        normalized = normalize_pairing_code(code)
        code_hash = _sha256(normalized) if len(normalized) <= MAX_CODE_INPUT_LENGTH else None
        error: PairingError | None = None
        issued: IssuedDevice | None = None
        with self._transaction() as conn:
            now = self._clock()
            forget_old_failures(conn, self.settings, now)
            wait = retry_after(conn, self.settings, client, now)
            if wait is not None:
                error = PairingRateLimited(wait)
            else:
                error = self._code_error(conn, code_hash, now)
                if error is not None:
                    record_failure(conn, client, now)
                else:
                    issued = issue_device(name, self.settings.token_bytes)
                    conn.execute(
                        "INSERT INTO devices (id, name, token_sha256, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (issued.device_id, name, _sha256(issued.token), now),
                    )
                    marked = conn.execute(
                        "UPDATE pairing_codes SET used_at = ?, used_by_device = ? "
                        "WHERE code_sha256 = ? AND used_at IS NULL",
                        (now, issued.device_id, code_hash),
                    )
                    if marked.rowcount != 1:  # pragma: no cover - excluded by BEGIN IMMEDIATE
                        raise InvalidPairingCode
        if error is not None:
            raise error
        assert issued is not None
        return issued

    def _code_error(
        self, conn: sqlite3.Connection, code_hash: str | None, now: float
    ) -> PairingError | None:
        """Why the code cannot be redeemed now, or None if it can."""
        if code_hash is None:
            return InvalidPairingCode()
        row = conn.execute(
            "SELECT created_at, expires_at, used_at FROM pairing_codes WHERE code_sha256 = ?",
            (code_hash,),
        ).fetchone()
        if row is None or row[2] is not None:
            return InvalidPairingCode()
        created_at, expires_at = float(row[0]), float(row[1])
        # A clock that went backwards (a box without RTC) must not stretch a code's life.
        if not created_at - 1.0 <= now < expires_at:
            return ExpiredPairingCode()
        return None

    def purge_expired_codes(self) -> int:
        """Delete expired codes (used or not) and failures older than the window.

        Returns the number of codes deleted. Used codes are kept until they expire, as a
        short record of which device redeemed them.
        """
        with self._transaction() as conn:
            now = self._clock()
            deleted = conn.execute(
                "DELETE FROM pairing_codes WHERE expires_at <= ?", (now,)
            ).rowcount
            forget_old_failures(conn, self.settings, now)
        return int(deleted)

    # Devices -------------------------------------------------------------------------

    def authenticate(self, token: str) -> Device | None:
        """The device holding ``token``, or None if unknown or revoked.

        ``last_seen`` is written only when it is at least
        :data:`~edge_server.device_tokens.LAST_SEEN_INTERVAL_SECONDS` away from now, so a
        busy phone costs one write a minute, not one per request.
        """
        if not plausible_token(token):
            return None
        token_hash = _sha256(token)
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE token_sha256 = ?",  # noqa: S608
                (token_hash,),
            ).fetchone()
        if row is None:
            return None
        device = _device_from_row(row)
        if device.revoked:
            return None
        now = self._clock()
        if not last_seen_is_stale(device, now):
            return device
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE devices SET last_seen = ? WHERE id = ? AND revoked_at IS NULL",
                (now, device.id),
            ).rowcount
        if updated != 1:  # revoked between the read and the write
            return None
        return Device(
            id=device.id,
            name=device.name,
            created_at=device.created_at,
            last_seen=now,
            revoked_at=None,
        )

    def list_devices(self, include_revoked: bool = True) -> list[Device]:
        """Paired devices, oldest first."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices {where} "  # noqa: S608
                "ORDER BY created_at, id"
            ).fetchall()
        return [_device_from_row(row) for row in rows]

    def revoke(self, device_id: str) -> bool:
        """Revoke a device's token; False if the device is unknown or already revoked."""
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (self._clock(), device_id),
            ).rowcount
        return int(updated) == 1
