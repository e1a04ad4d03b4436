"""The clock rules: the trusted-time floor and online freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from updates.clock import TrustedTime, check_expiry
from updates.errors import ExpiredMetadataError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_floor_never_moves_back_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "trusted-time.json"
    assert TrustedTime.load(path) == TrustedTime()
    floor = TrustedTime().advanced(T0)
    assert floor.advanced(T0 - DAY) == floor
    assert floor.advanced(None) == floor
    floor.save(path)
    assert TrustedTime.load(path).floor == T0
    path.write_text("not json")
    assert TrustedTime.load(path) == TrustedTime()


def test_reference_is_the_later_of_clock_and_floor() -> None:
    floor = TrustedTime(T0)
    assert floor.reference(T0 - 400 * DAY) == T0  # clock reset to a year ago
    assert floor.reference(T0 + DAY) == T0 + DAY


def test_a_clock_set_back_cannot_revive_expired_metadata() -> None:
    expires = {"timestamp": T0 + 10 * DAY}
    # Without the floor, a clock a month behind would accept it.
    check_expiry(expires, T0, now=T0 - 30 * DAY, trusted=TrustedTime(), online_max_age=None)
    with pytest.raises(ExpiredMetadataError, match="clock is behind"):
        check_expiry(
            expires, T0, now=T0 - 30 * DAY, trusted=TrustedTime(T0 + 20 * DAY), online_max_age=None
        )


def test_expired_metadata_names_the_clock() -> None:
    with pytest.raises(ExpiredMetadataError, match="set the clock"):
        check_expiry(
            {"snapshot": T0}, T0 - DAY, now=T0 + DAY, trusted=TrustedTime(), online_max_age=None
        )


def test_online_refuses_stale_metadata_a_usb_stick_may_carry() -> None:
    expires = {"timestamp": T0 + 42 * DAY}
    issued = T0
    now = T0 + 20 * DAY
    check_expiry(expires, issued, now=now, trusted=TrustedTime(), online_max_age=None)  # USB
    with pytest.raises(ExpiredMetadataError, match="signed 20 days ago"):
        check_expiry(expires, issued, now=now, trusted=TrustedTime(), online_max_age=14 * DAY)
    check_expiry(expires, issued, now=T0 + 13 * DAY, trusted=TrustedTime(), online_max_age=14 * DAY)
    with pytest.raises(ExpiredMetadataError, match="does not say when"):
        check_expiry(expires, None, now=now, trusted=TrustedTime(), online_max_age=14 * DAY)
