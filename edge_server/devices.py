"""Paired phones: one-time pairing codes, device tokens and brute-force limits.

A phone must pair with the box before it may use the API. The box shows a short numeric
pairing code (typed, or scanned as a QR code); the phone redeems it once, together with a
device name, and receives a random bearer token that it keeps. Every later request carries
that token, which :meth:`DeviceRegistry.authenticate` maps back to a :class:`Device`.

Storage is a SQLite file shared by the aiohttp server (event-loop thread) and the
``skinspector`` CLI (another process) at the same time, hence WAL mode,
``synchronous=FULL``, a busy timeout, short transactions and ``BEGIN IMMEDIATE`` wherever
a decision is read and then written (redeeming a code, counting failures), so the check
and the write cannot interleave with another writer in this or any other process.

Secrets are never stored in clear: the ``devices`` table holds the SHA-256 of each token
and ``pairing_codes`` the SHA-256 of each code; lookups are by hash. Tokens carry 256 bits
of entropy, so their hash reveals nothing useful. A pairing code has only ~27 bits: its
hash keeps it out of backups, dumps and casual reads, but whoever can read the file while
a code is live could brute-force it offline; codes live five minutes and such a reader
already controls the box, so this is accepted.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skinspector.core.errors import InputError, SkinspectorError
from skinspector.core.storage import immediate_transaction

__all__ = [
    "LAST_SEEN_INTERVAL_SECONDS",
    "MAX_DEVICE_NAME_LENGTH",
    "Device",
    "DeviceRegistry",
    "ExpiredPairingCode",
    "InvalidDeviceName",
    "InvalidPairingCode",
    "IssuedDevice",
    "PairingCode",
    "PairingError",
    "PairingRateLimited",
    "PairingSettings",
]

#: ``last_seen`` is rewritten at most this often per device (no write per request).
LAST_SEEN_INTERVAL_SECONDS = 60.0

#: Longest accepted device name, in characters, after stripping.
MAX_DEVICE_NAME_LENGTH = 64

# Inputs longer than these cannot be valid and are rejected without hashing them.
_MAX_CODE_INPUT_LENGTH = 64
_MAX_TOKEN_LENGTH = 256

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


class PairingSettings(BaseModel):
    """Pairing-code format, lifetime and brute-force limits.

    Code length: 8 decimal digits by default, i.e. 10**8 codes (~26.6 bits). Digits are
    quick to type on a phone's numeric keypad and to read aloud; the entropy only has to
    outlast the rate limits during a code's short life. Failed redemptions are capped at
    ``max_failures_global`` per sliding ``failure_window_seconds`` for all clients
    together (so rotating addresses does not help an attacker), and a code lives
    ``code_ttl_seconds``. With the defaults (50 failures per 600 s, 300 s lifetime) an
    attacker gets at most 50 guesses against a live code: a success chance of 5e-7 per
    live code (see :meth:`worst_case_guess_probability`). Six digits would give 5e-5,
    acceptable but with little margin if codes are left lying around; eight digits cost
    the user almost nothing.

    The global cap is a deliberate trade-off: a hostile device on the LAN can keep
    pairing locked for everybody by spending failures, but it cannot pair, and it cannot
    touch phones that are already paired. The per-client cap makes an honest user who
    mistypes a few times wait instead of locking out the whole clinic.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    code_length: int = Field(
        8, ge=6, le=12, description="Decimal digits in a pairing code (10**n codes)."
    )
    code_ttl_seconds: float = Field(
        300.0, ge=30.0, le=3600.0, description="How long a new pairing code stays valid."
    )
    max_failures_per_client: int = Field(
        5, ge=1, le=100, description="Failed redemptions one client may make per window."
    )
    failure_window_seconds: float = Field(
        600.0, ge=60.0, le=86_400.0, description="Sliding window for failure counting."
    )
    max_failures_global: int = Field(
        50, ge=1, le=10_000, description="Failed redemptions all clients may make per window."
    )
    token_bytes: int = Field(
        32, ge=16, le=64, description="Random bytes in a device token (URL-safe base64)."
    )

    def worst_case_guess_probability(self, live_codes: int = 1) -> float:
        """Upper bound on an attacker guessing one of ``live_codes`` codes in their lifetime.

        Within any interval of length ``code_ttl_seconds`` the sliding-window limit admits
        at most ``max_failures_global * ceil(ttl / window)`` failed guesses, and each guess
        is compared with every live code at once.
        """
        guesses = self.max_failures_global * math.ceil(
            self.code_ttl_seconds / self.failure_window_seconds
        )
        return min(1.0, guesses * live_codes / 10.0**self.code_length)


class PairingError(InputError):
    """Pairing failed because of what the phone sent; the message is safe to show."""


class InvalidPairingCode(PairingError):
    """The code is wrong, unknown or already used (the code itself is never echoed)."""

    def __init__(self) -> None:
        super().__init__(
            "This pairing code is not valid. Check the code shown on the box and try again."
        )


class ExpiredPairingCode(PairingError):
    """The code existed but its lifetime is over."""

    def __init__(self) -> None:
        super().__init__("This pairing code has expired. Create a new code on the box.")


class InvalidDeviceName(PairingError):
    """The device name is empty, too long or holds non-printable characters."""

    def __init__(self) -> None:
        super().__init__(
            f"The device name must be 1 to {MAX_DEVICE_NAME_LENGTH} printable characters."
        )


class PairingRateLimited(PairingError):
    """Too many failed attempts, from this client or from everybody; try again later."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            "Too many failed pairing attempts. "
            f"Try again in {retry_after_seconds} second{'s' if retry_after_seconds != 1 else ''}."
        )


@dataclass(frozen=True, slots=True)
class PairingCode:
    """A fresh one-time code; only its hash is stored, so this is the only copy."""

    code: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True, slots=True)
class IssuedDevice:
    """A newly paired device. ``token`` is shown once and never stored in clear."""

    device_id: str
    name: str
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Device:
    """A paired device as stored (times are clock seconds, as from ``time.time``)."""

    id: str
    name: str
    created_at: float
    last_seen: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        """Whether the device's token has been revoked."""
        return self.revoked_at is not None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _new_code(length: int) -> str:
    """A uniformly random ``length``-digit decimal string (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def _normalize_code(code: str) -> str:
    """Drop surrounding blanks and grouping (``"1234 5678"``, ``"1234-5678"``).

    Non-ASCII decimal digits (e.g. Arabic-Indic ones from a localized keyboard) are
    mapped to ASCII so the hash matches.
    """
    cleaned = "".join(code.split()).replace("-", "")
    if cleaned.isdecimal():
        cleaned = "".join(str(unicodedata.decimal(char)) for char in cleaned)
    return cleaned


def _validate_device_name(name: str) -> str:
    """NFC-normalized, stripped name of 1-64 printable characters, or InvalidDeviceName."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(cleaned) <= MAX_DEVICE_NAME_LENGTH or not cleaned.isprintable():
        raise InvalidDeviceName
    return cleaned


def _device_from_row(row: tuple[Any, ...]) -> Device:
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
    against the client and counted towards both the per-client and the global limit.
    Attempts refused by the rate limit are not recorded (they did not test a code) and
    a success does not clear earlier failures.

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
        self._conn = sqlite3.connect(
            self._path,
            timeout=busy_timeout_seconds,
            isolation_level=None,  # autocommit; transactions are explicit
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
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
                code = _new_code(length)
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
        name = _validate_device_name(device_name)
        normalized = _normalize_code(code)
        code_hash = _sha256(normalized) if len(normalized) <= _MAX_CODE_INPUT_LENGTH else None
        error: PairingError | None = None
        issued: IssuedDevice | None = None
        with self._transaction() as conn:
            now = self._clock()
            conn.execute(
                "DELETE FROM pairing_failures WHERE at <= ?",
                (now - self.settings.failure_window_seconds,),
            )
            retry_after = self._retry_after(conn, client, now)
            if retry_after is not None:
                error = PairingRateLimited(retry_after)
            else:
                error = self._code_error(conn, code_hash, now)
                if error is not None:
                    conn.execute(
                        "INSERT INTO pairing_failures (client, at) VALUES (?, ?)", (client, now)
                    )
                else:
                    issued = IssuedDevice(
                        device_id=secrets.token_hex(8),
                        name=name,
                        token=secrets.token_urlsafe(self.settings.token_bytes),
                    )
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

    def _retry_after(self, conn: sqlite3.Connection, client: str, now: float) -> int | None:
        """Seconds until this client may try again, or None if it may try now."""
        window = self.settings.failure_window_seconds
        since = now - window
        waits: list[float] = []
        for where, params, limit in (
            ("client = ? AND at > ?", (client, since), self.settings.max_failures_per_client),
            ("at > ?", (since,), self.settings.max_failures_global),
        ):
            count = int(
                conn.execute(
                    f"SELECT COUNT(*) FROM pairing_failures WHERE {where}",  # noqa: S608
                    params,
                ).fetchone()[0]
            )
            if count >= limit:
                # The count drops below the limit when the (count - limit + 1)-th oldest
                # failure leaves the window.
                oldest = float(
                    conn.execute(
                        f"SELECT at FROM pairing_failures WHERE {where} "  # noqa: S608
                        "ORDER BY at LIMIT 1 OFFSET ?",
                        (*params, count - limit),
                    ).fetchone()[0]
                )
                waits.append(oldest + window - now)
        if not waits:
            return None
        return max(1, math.ceil(max(waits)))

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
            conn.execute(
                "DELETE FROM pairing_failures WHERE at <= ?",
                (now - self.settings.failure_window_seconds,),
            )
        return int(deleted)

    # Devices -------------------------------------------------------------------------

    def authenticate(self, token: str) -> Device | None:
        """The device holding ``token``, or None if unknown or revoked.

        ``last_seen`` is written only when it is at least
        :data:`LAST_SEEN_INTERVAL_SECONDS` away from now, so a busy phone costs one write
        a minute, not one per request.
        """
        if not token or len(token) > _MAX_TOKEN_LENGTH:
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
        if device.last_seen is not None and (
            abs(now - device.last_seen) < LAST_SEEN_INTERVAL_SECONDS
        ):
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
