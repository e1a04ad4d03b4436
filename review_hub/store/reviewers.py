"""Reviewer accounts, their review-UI sessions and failed-login counting (tables
``reviewers``, ``sessions``, ``login_failures``).

Passwords are kept as scrypt hashes (:mod:`review_hub.passwords`); a session row keeps only
the SHA-256 of the cookie token, with a per-session CSRF token and an absolute expiry.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from review_hub.passwords import check_password_policy, hash_password
from review_hub.store.database import StoreBase, clean_name
from skinspector.core.errors import InputError

__all__ = [
    "InvalidUsername",
    "ReviewerRecord",
    "ReviewerStore",
    "SessionRecord",
    "normalise_username",
]

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")


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


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


class ReviewerStore(StoreBase):
    """The reviewer, session and login-failure records of :class:`~review_hub.store.HubStore`."""

    # ------------------------------------------------------------------ accounts

    def add_reviewer(self, username: str, display_name: str, password: str) -> ReviewerRecord:
        """Create a reviewer account (the password is checked, then scrypt-hashed)."""
        username = normalise_username(username)
        display_name = clean_name(display_name, "display name")
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

    def reserve_login_attempt(
        self, username: str, client: str, *, window: float, max_user: int, max_client: int
    ) -> float | None:
        """Atomically: refuse (seconds to wait) when ``username`` or ``client`` is at its
        limit, else record this attempt as a failure *before* the password is checked and
        return None. Concurrent attempts cannot all pass the check: each one that passes
        is counted at once. A successful login clears the username's records."""
        now = self._clock()
        since = now - window
        with self._write() as db:
            db.execute("DELETE FROM login_failures WHERE at <= ?", (since,))
            waits: list[float] = []
            for column, value, limit in (
                ("username", username, max_user),
                ("client", client, max_client),
            ):
                rows = db.execute(
                    f"SELECT at FROM login_failures WHERE {column} = ? AND at > ? "  # noqa: S608
                    "ORDER BY at DESC LIMIT ?",
                    (value, since, limit),
                ).fetchall()
                if len(rows) >= limit:
                    waits.append(max(1.0, float(rows[-1]["at"]) + window - now))
            if waits:
                return max(waits)
            db.execute(
                "INSERT INTO login_failures (username, client, at) VALUES (?, ?, ?)",
                (username, client, now),
            )
        return None

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
