"""Time the clinic can trust, for metadata expiry, whatever its own clock says.

Clinic boxes run offline for weeks; a flat CMOS battery sends the clock back years, a bad
manual setting sends it forward. Three rules:

1. **The clock floor.** Every timestamp metadata file our repository signs carries the
   time it was signed (``x-skinspector-issued``). The clinic keeps the newest such time it
   has verified (``trusted-time.json``, never moved backwards) and checks expiry against
   ``max(own clock, floor)``: a clock that went back cannot make stale metadata (a frozen
   repository, an old USB stick) look fresh again.
2. **Online freshness.** Over the network, timestamp metadata must also have been signed
   at most ``online_max_age`` ago (14 days by default; the hub re-signs daily). A USB stick
   or local directory is accepted until the metadata expires (6 weeks).
3. **Expiry never touches the active bundle.** Once installed, a bundle is trusted by its
   own files and hashes; start-up, fallback and rollback never look at metadata or the
   clock. A clock that is wrong can only delay an *update*, and the error says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from skinspector.core.storage import write_atomic
from updates.errors import ExpiredMetadataError

__all__ = ["TrustedTime", "check_expiry", "parse_issued"]


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TrustedTime:
    """The newest signing time of verified metadata (``None``: nothing verified yet)."""

    floor: datetime | None = None

    def reference(self, now: datetime) -> datetime:
        """The time expiry is checked against: the clock, or the floor if it is later."""
        return now if self.floor is None or now >= self.floor else self.floor

    def advanced(self, issued: datetime | None) -> TrustedTime:
        if issued is None or (self.floor is not None and issued <= self.floor):
            return self
        return TrustedTime(issued)

    @classmethod
    def load(cls, path: Path) -> TrustedTime:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(_parse(raw.get("floor")) if isinstance(raw, dict) else None)

    def save(self, path: Path) -> None:
        floor = None if self.floor is None else self.floor.isoformat(timespec="seconds")
        write_atomic(path, json.dumps({"floor": floor}).encode())


def check_expiry(
    expires: dict[str, datetime],
    issued: datetime | None,
    *,
    now: datetime,
    trusted: TrustedTime,
    online_max_age: timedelta | None,
) -> None:
    """Refuse expired metadata against ``trusted.reference(now)``; online, also refuse a
    timestamp signed more than ``online_max_age`` before it."""
    reference = trusted.reference(now)
    clock_note = (
        f" (this box's clock reads {now:%Y-%m-%d %H:%M} UTC"
        + (
            f"; it has seen metadata signed at {trusted.floor:%Y-%m-%d %H:%M} UTC, so its "
            "clock is behind"
            if reference != now
            else "; if that is wrong, set the clock and try again"
        )
        + ")"
    )
    for role, when in expires.items():
        if when <= reference:
            raise ExpiredMetadataError(
                f"{role} metadata expired at {when:%Y-%m-%d %H:%M} UTC{clock_note}"
            )
    if online_max_age is not None:
        if issued is None:
            raise ExpiredMetadataError("the timestamp metadata does not say when it was signed")
        if reference - issued > online_max_age:
            days = (reference - issued) / timedelta(days=1)
            raise ExpiredMetadataError(
                f"the hub's metadata was signed {days:.0f} days ago; online, at most "
                f"{online_max_age / timedelta(days=1):.0f} days are accepted (the hub should "
                f"run `skinspector bundle refresh` daily){clock_note}"
            )


def parse_issued(value: object) -> datetime | None:
    return _parse(value)
