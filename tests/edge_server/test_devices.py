"""DeviceRegistry on a real SQLite file: pairing, tokens, rate limits, concurrency."""

from __future__ import annotations

import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_server import devices
from edge_server.device_tokens import LAST_SEEN_INTERVAL_SECONDS, Device, IssuedDevice
from edge_server.devices import DeviceRegistry
from edge_server.pairing import (
    ExpiredPairingCode,
    InvalidDeviceName,
    InvalidPairingCode,
    PairingError,
    PairingRateLimited,
    PairingSettings,
)
from skinspector.core.errors import InputError

T0 = 1_700_000_000.0


class FakeClock:
    """A settable clock (seconds), shared by every registry in a test."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "devices.sqlite3"


@pytest.fixture
def open_registry(db_path: Path, clock: FakeClock) -> Iterator[Callable[..., DeviceRegistry]]:
    """Opens registries on the shared file and clock; closes them all afterwards."""
    opened: list[DeviceRegistry] = []

    def _open(settings: PairingSettings | None = None) -> DeviceRegistry:
        registry = DeviceRegistry(db_path, settings=settings, clock=clock)
        opened.append(registry)
        return registry

    yield _open
    for registry in opened:
        registry.close()


@pytest.fixture
def registry(open_registry: Callable[..., DeviceRegistry]) -> DeviceRegistry:
    return open_registry()


def _wrong_code(registry: DeviceRegistry, *avoid: str) -> str:
    length = registry.settings.code_length
    candidate = 0
    while f"{candidate:0{length}d}" in avoid:
        candidate += 1
    return f"{candidate:0{length}d}"


# Pairing ------------------------------------------------------------------------------


def test_pair_end_to_end(registry: DeviceRegistry, clock: FakeClock) -> None:
    pairing = registry.create_pairing_code()
    assert len(pairing.code) == 8
    assert pairing.code.isdigit()
    assert pairing.expires_at == T0 + 300

    clock.advance(10)
    issued = registry.redeem(pairing.code, "  Nurse phone  ", client="192.168.1.50")
    assert issued.name == "Nurse phone"
    assert len(issued.token) >= 43  # 32 random bytes, URL-safe base64

    device = registry.authenticate(issued.token)
    assert device is not None
    assert device.id == issued.device_id
    assert device.name == "Nurse phone"
    assert device.created_at == T0 + 10
    assert device.last_seen == T0 + 10
    assert not device.revoked
    assert registry.list_devices() == [device]


def test_code_is_single_use(registry: DeviceRegistry) -> None:
    code = registry.create_pairing_code().code
    registry.redeem(code, "first", client="a")
    with pytest.raises(InvalidPairingCode):
        registry.redeem(code, "second", client="b")
    assert [d.name for d in registry.list_devices()] == ["first"]


def test_grouped_code_input_is_accepted(registry: DeviceRegistry) -> None:
    first = registry.create_pairing_code().code
    second = registry.create_pairing_code().code
    registry.redeem(f" {first[:4]} {first[4:]} ", "spaced", client="a")
    registry.redeem(f"{second[:4]}-{second[4:]}", "dashed", client="a")
    assert len(registry.list_devices()) == 2


def test_older_codes_stay_valid(registry: DeviceRegistry) -> None:
    codes = [registry.create_pairing_code().code for _ in range(3)]
    assert len(set(codes)) == 3
    for index, code in enumerate(codes):
        registry.redeem(code, f"phone {index}", client="a")
    assert len(registry.list_devices()) == 3


def test_codes_have_configured_length(open_registry: Callable[..., DeviceRegistry]) -> None:
    registry = open_registry(PairingSettings(code_length=6))
    codes = {registry.create_pairing_code().code for _ in range(20)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)


def _redeem_concurrently(
    registries: list[DeviceRegistry], code: str
) -> tuple[list[IssuedDevice], list[BaseException]]:
    barrier = threading.Barrier(len(registries))
    results: list[IssuedDevice] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def worker(index: int, registry: DeviceRegistry) -> None:
        barrier.wait(timeout=30)
        try:
            issued = registry.redeem(code, f"phone {index}", client=f"10.0.0.{index}")
        except BaseException as exc:
            with guard:
                errors.append(exc)
        else:
            with guard:
                results.append(issued)

    threads = [
        threading.Thread(target=worker, args=(index, registry))
        for index, registry in enumerate(registries)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    return results, errors


def test_concurrent_redeem_one_registry_exactly_one_wins(registry: DeviceRegistry) -> None:
    code = registry.create_pairing_code().code
    results, errors = _redeem_concurrently([registry] * 8, code)
    assert len(results) == 1
    assert len(errors) == 7
    assert all(isinstance(exc, InvalidPairingCode) for exc in errors)
    assert [d.id for d in registry.list_devices()] == [results[0].device_id]


def test_concurrent_redeem_separate_connections_exactly_one_wins(
    open_registry: Callable[..., DeviceRegistry],
) -> None:
    # Eight registries = eight SQLite connections, as if eight processes raced.
    registries = [open_registry() for _ in range(8)]
    code = registries[0].create_pairing_code().code
    results, errors = _redeem_concurrently(registries, code)
    assert len(results) == 1
    assert len(errors) == 7
    assert all(isinstance(exc, InvalidPairingCode) for exc in errors)
    assert [d.id for d in registries[3].list_devices()] == [results[0].device_id]


def test_code_expires(registry: DeviceRegistry, clock: FakeClock) -> None:
    code = registry.create_pairing_code().code
    clock.advance(300)
    with pytest.raises(ExpiredPairingCode):
        registry.redeem(code, "late", client="a")
    assert registry.list_devices() == []


def test_code_valid_until_just_before_expiry(registry: DeviceRegistry, clock: FakeClock) -> None:
    code = registry.create_pairing_code().code
    clock.advance(299.9)
    registry.redeem(code, "just in time", client="a")


def test_clock_going_backwards_does_not_extend_a_code(
    registry: DeviceRegistry, clock: FakeClock
) -> None:
    code = registry.create_pairing_code().code
    clock.advance(-3600)
    with pytest.raises(ExpiredPairingCode):
        registry.redeem(code, "phone", client="a")


def test_expired_attempts_count_as_failures(registry: DeviceRegistry, clock: FakeClock) -> None:
    code = registry.create_pairing_code().code
    clock.advance(301)
    for _ in range(5):
        with pytest.raises(ExpiredPairingCode):
            registry.redeem(code, "late", client="a")
    with pytest.raises(PairingRateLimited):
        registry.redeem(registry.create_pairing_code().code, "late", client="a")


def test_errors_are_input_errors_that_do_not_echo_the_code(registry: DeviceRegistry) -> None:
    code = registry.create_pairing_code().code
    wrong = _wrong_code(registry, code)
    with pytest.raises(InvalidPairingCode) as caught:
        registry.redeem(wrong, "phone", client="a")
    assert isinstance(caught.value, PairingError)
    assert isinstance(caught.value, InputError)
    assert wrong not in str(caught.value)
    assert str(caught.value)


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "x" * 65, "tab\there", "new\nline", "nul\x00", "\u202eevil", "bell\x07"],
)
def test_device_name_validation(registry: DeviceRegistry, bad: str) -> None:
    code = registry.create_pairing_code().code
    with pytest.raises(InvalidDeviceName):
        registry.redeem(code, bad, client="a")
    # A bad name neither consumes the code nor counts as a failure.
    for _ in range(10):
        with pytest.raises(InvalidDeviceName):
            registry.redeem(code, bad, client="a")
    assert registry.redeem(code, "fine", client="a").name == "fine"


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("x" * 64, "x" * 64),
        ("  padded  ", "padded"),
        ("Téléphone du dispensaire", "Téléphone du dispensaire"),
        ("Cafe\u0301", "Café"),  # NFC-normalized
    ],
)
def test_valid_device_names(registry: DeviceRegistry, name: str, stored: str) -> None:
    code = registry.create_pairing_code().code
    issued = registry.redeem(code, name, client="a")
    assert issued.name == stored
    assert registry.list_devices()[0].name == stored


# Rate limits -------------------------------------------------------------------------


def test_per_client_limit_blocks_then_recovers(registry: DeviceRegistry, clock: FakeClock) -> None:
    code = registry.create_pairing_code().code
    wrong = _wrong_code(registry, code)
    for _ in range(5):
        with pytest.raises(InvalidPairingCode):
            registry.redeem(wrong, "phone", client="attacker")
        clock.advance(10)
    # Even the right code is refused now: limits are checked before the code.
    with pytest.raises(PairingRateLimited) as caught:
        registry.redeem(code, "phone", client="attacker")
    # Failures at T0, +10, ..., +40; now T0+50; the first leaves the window at T0+600.
    assert caught.value.retry_after_seconds == 550
    assert "550 seconds" in str(caught.value)
    assert code not in str(caught.value)

    # Refused attempts are not recorded: they do not push the lock-out further.
    for _ in range(20):
        with pytest.raises(PairingRateLimited):
            registry.redeem(wrong, "phone", client="attacker")

    # Another client is unaffected.
    other = registry.create_pairing_code().code
    registry.redeem(other, "nurse", client="nurse")

    clock.advance(549)
    with pytest.raises(PairingRateLimited) as caught:
        registry.redeem(code, "phone", client="attacker")
    assert caught.value.retry_after_seconds == 1
    clock.advance(1)
    fresh = registry.create_pairing_code().code  # the first one expired meanwhile
    assert registry.redeem(fresh, "phone", client="attacker").name == "phone"


def test_per_client_limit_slides(registry: DeviceRegistry, clock: FakeClock) -> None:
    wrong = _wrong_code(registry)
    for _ in range(5):
        with pytest.raises(InvalidPairingCode):
            registry.redeem(wrong, "phone", client="a")
        clock.advance(100)
    # Failures at T0 .. T0+400, now T0+500; the T0 one leaves at T0+600.
    with pytest.raises(PairingRateLimited) as caught:
        registry.redeem(wrong, "phone", client="a")
    assert caught.value.retry_after_seconds == 100
    clock.advance(100)
    # One slot freed: one more failure allowed, then blocked until T0+700.
    with pytest.raises(InvalidPairingCode):
        registry.redeem(wrong, "phone", client="a")
    with pytest.raises(PairingRateLimited) as caught:
        registry.redeem(wrong, "phone", client="a")
    assert caught.value.retry_after_seconds == 100


def test_global_limit_across_clients_then_recovers(
    registry: DeviceRegistry, clock: FakeClock
) -> None:
    code = registry.create_pairing_code().code
    wrong = _wrong_code(registry, code)
    for index in range(50):
        with pytest.raises(InvalidPairingCode):
            registry.redeem(wrong, "phone", client=f"10.0.{index // 250}.{index % 250}")
    clock.advance(60)
    with pytest.raises(PairingRateLimited) as caught:
        registry.redeem(code, "phone", client="fresh-client")
    assert caught.value.retry_after_seconds == 540
    clock.advance(540)
    fresh = registry.create_pairing_code().code  # the first one expired meanwhile
    assert registry.redeem(fresh, "phone", client="fresh-client").name == "phone"


def test_custom_limits(open_registry: Callable[..., DeviceRegistry], clock: FakeClock) -> None:
    settings = PairingSettings(
        max_failures_per_client=2, max_failures_global=3, failure_window_seconds=60
    )
    registry = open_registry(settings)
    wrong = _wrong_code(registry)
    for client in ("a", "a", "b"):
        with pytest.raises(InvalidPairingCode):
            registry.redeem(wrong, "phone", client=client)
    for client in ("a", "b", "c"):
        with pytest.raises(PairingRateLimited):
            registry.redeem(wrong, "phone", client=client)
    clock.advance(60)
    with pytest.raises(InvalidPairingCode):
        registry.redeem(wrong, "phone", client="a")


def test_limits_shared_between_registries(
    open_registry: Callable[..., DeviceRegistry],
) -> None:
    first, second = open_registry(), open_registry()
    wrong = _wrong_code(first)
    for registry in (first, second, first, second, first):
        with pytest.raises(InvalidPairingCode):
            registry.redeem(wrong, "phone", client="a")
    with pytest.raises(PairingRateLimited):
        second.redeem(wrong, "phone", client="a")


def test_rate_limited_message() -> None:
    error = PairingRateLimited(1)
    assert error.retry_after_seconds == 1
    assert str(error) == "Too many failed pairing attempts. Try again in 1 second."
    assert isinstance(error, PairingError)


# Tokens ------------------------------------------------------------------------------


def test_unknown_wrong_and_revoked_tokens(registry: DeviceRegistry) -> None:
    issued = registry.redeem(registry.create_pairing_code().code, "phone", client="a")
    assert registry.authenticate("") is None
    assert registry.authenticate("not-a-token") is None
    assert registry.authenticate(issued.token[:-1]) is None
    assert registry.authenticate(issued.token + "x") is None
    assert registry.authenticate("x" * 10_000) is None
    assert registry.authenticate(issued.token) is not None

    assert registry.revoke(issued.device_id) is True
    assert registry.authenticate(issued.token) is None
    assert registry.revoke(issued.device_id) is False
    assert registry.revoke("no-such-device") is False


def test_list_devices_and_revocation(registry: DeviceRegistry, clock: FakeClock) -> None:
    first = registry.redeem(registry.create_pairing_code().code, "one", client="a")
    clock.advance(1)
    second = registry.redeem(registry.create_pairing_code().code, "two", client="a")
    clock.advance(1)
    assert registry.revoke(first.device_id)

    everything = registry.list_devices()
    assert [d.id for d in everything] == [first.device_id, second.device_id]
    assert everything[0].revoked_at == T0 + 2
    assert everything[0].revoked
    assert [d.id for d in registry.list_devices(include_revoked=False)] == [second.device_id]


def test_tokens_are_unique(registry: DeviceRegistry) -> None:
    tokens = {
        registry.redeem(registry.create_pairing_code().code, f"p{i}", client="a").token
        for i in range(5)
    }
    assert len(tokens) == 5


def test_last_seen_is_throttled(registry: DeviceRegistry, clock: FakeClock) -> None:
    issued = registry.redeem(registry.create_pairing_code().code, "phone", client="a")
    device = registry.authenticate(issued.token)
    assert device is not None
    assert device.last_seen == T0

    conn = sqlite3.connect(registry.db_path)
    try:
        changes_before = _data_version_probe(conn)
        clock.advance(LAST_SEEN_INTERVAL_SECONDS - 1)
        for _ in range(20):
            seen = registry.authenticate(issued.token)
            assert seen is not None
            assert seen.last_seen == T0
        assert _data_version_probe(conn) == changes_before  # no write at all
        assert registry.list_devices()[0].last_seen == T0

        clock.advance(1)
        seen = registry.authenticate(issued.token)
        assert seen is not None
        assert seen.last_seen == T0 + LAST_SEEN_INTERVAL_SECONDS
        assert _data_version_probe(conn) != changes_before
    finally:
        conn.close()
    assert registry.list_devices()[0].last_seen == T0 + LAST_SEEN_INTERVAL_SECONDS


def _data_version_probe(conn: sqlite3.Connection) -> int:
    """``PRAGMA data_version`` changes when another connection commits to the file."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def test_issued_device_repr_hides_token(registry: DeviceRegistry) -> None:
    pairing = registry.create_pairing_code()
    issued = registry.redeem(pairing.code, "phone", client="a")
    assert issued.token not in repr(issued)
    assert pairing.code not in repr(pairing)


# Storage -----------------------------------------------------------------------------


def test_secrets_not_stored_in_clear(
    open_registry: Callable[..., DeviceRegistry], db_path: Path
) -> None:
    registry = open_registry()
    pairing = registry.create_pairing_code()
    unused = registry.create_pairing_code()
    issued = registry.redeem(pairing.code, "phone", client="a")
    assert registry.authenticate(issued.token) is not None
    secrets_ = [issued.token, pairing.code, unused.code]

    def raw_bytes() -> bytes:
        files = sorted(db_path.parent.glob(db_path.name + "*"))
        assert db_path in files
        return b"".join(path.read_bytes() for path in files)

    data = raw_bytes()  # main file plus -wal/-shm while open
    assert len(data) > 0
    for secret in secrets_:
        assert secret.encode() not in data
    registry.close()  # checkpoints the WAL into the main file
    data = raw_bytes()
    for secret in secrets_:
        assert secret.encode() not in data


def test_second_registry_sees_the_first(
    open_registry: Callable[..., DeviceRegistry], clock: FakeClock
) -> None:
    server, cli = open_registry(), open_registry()
    # The CLI creates the code; the server redeems it.
    code = cli.create_pairing_code().code
    issued = server.redeem(code, "phone", client="a")

    listed = cli.list_devices()
    assert [d.id for d in listed] == [issued.device_id]
    seen = cli.authenticate(issued.token)
    assert isinstance(seen, Device)
    assert seen.name == "phone"

    # The CLI revokes; the server refuses the token at once.
    assert cli.revoke(issued.device_id)
    assert server.authenticate(issued.token) is None


def test_reopening_keeps_data(db_path: Path, clock: FakeClock) -> None:
    with DeviceRegistry(db_path, clock=clock) as first:
        issued = first.redeem(first.create_pairing_code().code, "phone", client="a")
    with DeviceRegistry(db_path, clock=clock) as second:
        assert second.authenticate(issued.token) is not None


def test_schema_and_pragmas(registry: DeviceRegistry, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {"devices", "pairing_codes", "pairing_failures"} <= tables
        columns = {row[1] for row in conn.execute("PRAGMA table_info(devices)")}
        assert columns == {"id", "name", "token_sha256", "created_at", "last_seen", "revoked_at"}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()
    synchronous = registry._conn.execute("PRAGMA synchronous").fetchone()[0]
    assert synchronous == 2  # FULL


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_database_file_is_private(registry: DeviceRegistry, db_path: Path) -> None:
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_purge_expired_codes(registry: DeviceRegistry, clock: FakeClock) -> None:
    used = registry.create_pairing_code().code
    registry.redeem(used, "phone", client="a")
    with pytest.raises(InvalidPairingCode):
        registry.redeem(_wrong_code(registry, used), "phone", client="a")
    clock.advance(200)
    fresh = registry.create_pairing_code().code
    assert registry.purge_expired_codes() == 0
    clock.advance(100)  # the first code (used) expires now, the fresh one lives on
    assert registry.purge_expired_codes() == 1
    conn = sqlite3.connect(registry.db_path)
    try:
        failures = "SELECT COUNT(*) FROM pairing_failures"
        assert conn.execute(failures).fetchone()[0] == 1
        clock.advance(300)
        assert registry.purge_expired_codes() == 1
        # The failure from T0 has left the 600 s window and was purged as well.
        assert conn.execute(failures).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM pairing_codes").fetchone()[0] == 0
    finally:
        conn.close()
    with pytest.raises(InvalidPairingCode):  # purged = unknown
        registry.redeem(fresh, "phone", client="b")


def test_code_collision_is_redrawn(
    registry: DeviceRegistry, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = iter(["11111111", "11111111", "22222222", "11111111"])
    monkeypatch.setattr(devices, "new_pairing_code", lambda length: next(drawn))
    assert registry.create_pairing_code().code == "11111111"
    assert registry.create_pairing_code().code == "22222222"  # the live one is not reused
    clock.advance(300)
    # Expired rows may be reused, and the reused code works again (once).
    reused = registry.create_pairing_code()
    assert reused.code == "11111111"
    assert reused.expires_at == T0 + 600
    registry.redeem("11111111", "phone", client="a")


# Settings ----------------------------------------------------------------------------


def test_default_settings_make_guessing_hopeless() -> None:
    settings = PairingSettings()
    assert settings.code_length == 8
    assert settings.worst_case_guess_probability() <= 1e-6
    assert settings.worst_case_guess_probability(live_codes=10) <= 1e-5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code_length": 4},
        {"code_length": 13},
        {"code_ttl_seconds": 0},
        {"max_failures_per_client": 0},
        {"failure_window_seconds": 1},
        {"max_failures_global": 0},
        {"token_bytes": 8},
        {"unknown": 1},
    ],
)
def test_settings_bounds(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PairingSettings.model_validate(kwargs)
