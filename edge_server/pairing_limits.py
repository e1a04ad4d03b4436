"""Brute-force limits on pairing: failed redemptions counted per client and globally.

Every failed redemption (wrong, unknown, already used or expired code) is one row of the
registry's ``pairing_failures`` table. A client may fail ``max_failures_per_client`` times
and all clients together ``max_failures_global`` times per sliding
``failure_window_seconds`` (see :class:`~edge_server.pairing.PairingSettings` for why both).
Attempts refused by the limit are not recorded (they did not test a code), and a success
does not clear earlier failures.

The functions work on a connection inside the caller's ``BEGIN IMMEDIATE`` transaction, so
that checking the limit and recording a failure cannot interleave with another process.
"""

from __future__ import annotations

import math
import sqlite3

from edge_server.pairing import PairingSettings

__all__ = ["forget_old_failures", "record_failure", "retry_after"]


def forget_old_failures(conn: sqlite3.Connection, settings: PairingSettings, now: float) -> None:
    """Delete failures that have left the window ending at ``now``."""
    conn.execute(
        "DELETE FROM pairing_failures WHERE at <= ?", (now - settings.failure_window_seconds,)
    )


def record_failure(conn: sqlite3.Connection, client: str, now: float) -> None:
    """Count one failed redemption against ``client`` (and so against everybody)."""
    conn.execute("INSERT INTO pairing_failures (client, at) VALUES (?, ?)", (client, now))


def retry_after(
    conn: sqlite3.Connection, settings: PairingSettings, client: str, now: float
) -> int | None:
    """Whole seconds until ``client`` may try again, or None if it may try now."""
    window = settings.failure_window_seconds
    since = now - window
    waits: list[float] = []
    for where, params, limit in (
        ("client = ? AND at > ?", (client, since), settings.max_failures_per_client),
        ("at > ?", (since,), settings.max_failures_global),
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
