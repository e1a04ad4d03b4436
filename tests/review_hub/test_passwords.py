"""Reviewer passwords: scrypt hashes with their parameters, constant-time verification."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from review_hub.passwords import (
    MIN_PASSWORD_LENGTH,
    ScryptParams,
    WeakPassword,
    hash_password,
    needs_rehash,
    verify_password,
)
from review_hub.store import HubStore, InvalidUsername

PASSWORD = "a long enough passphrase"


def _database_bytes(folder: Path) -> bytes:
    """The database and any WAL left beside it."""
    return b"".join(
        path.read_bytes() for path in sorted(folder.glob("hub.sqlite3*")) if path.is_file()
    )


def test_hash_is_not_the_password_and_verifies() -> None:
    stored = hash_password(PASSWORD)
    assert PASSWORD not in stored
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    assert not verify_password("", stored)


def test_scrypt_parameters_are_recorded_with_the_hash() -> None:
    stored = hash_password(PASSWORD)
    prefix, name, params, salt, key = stored.split("$")
    assert (prefix, name, params) == ("", "scrypt", "n=16384,r=8,p=5")
    assert salt
    assert key
    assert not needs_rehash(stored)


def test_salts_differ_between_hashes() -> None:
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_older_parameters_still_verify_and_ask_for_a_rehash() -> None:
    weak = hash_password(PASSWORD, ScryptParams(n=2**10, r=8, p=1))
    assert "$scrypt$n=1024,r=8,p=1$" in weak
    assert verify_password(PASSWORD, weak)
    assert needs_rehash(weak)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain text password",
        "$scrypt$n=16384,r=8,p=1$onlysalt",
        "$scrypt$n=3,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",  # n not a power of 2
        "$scrypt$n=1048576000,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",  # absurd cost
        "$pbkdf2$n=16384,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
    ],
)
def test_malformed_stored_hashes_never_verify(stored: str) -> None:
    assert not verify_password(PASSWORD, stored)


def test_password_policy() -> None:
    with pytest.raises(WeakPassword):
        hash_password("x" * (MIN_PASSWORD_LENGTH - 1))
    assert verify_password("x" * MIN_PASSWORD_LENGTH, hash_password("x" * MIN_PASSWORD_LENGTH))


def test_store_keeps_only_the_hash(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite3") as store:
        reviewer = store.add_reviewer("  Dr.Who@Clinic ", "Dr Who", PASSWORD)
        assert reviewer.username == "dr.who@clinic"
        with pytest.raises(WeakPassword):
            store.add_reviewer("short", "Short", "too short")
        with pytest.raises(InvalidUsername):
            store.add_reviewer("no spaces please", "X", PASSWORD)
    db = sqlite3.connect(tmp_path / "hub.sqlite3")
    try:
        ((stored,),) = db.execute("SELECT password_hash FROM reviewers").fetchall()
    finally:
        db.close()
    assert PASSWORD not in stored
    assert stored.startswith("$scrypt$n=16384,r=8,p=5$")
    assert verify_password(PASSWORD, stored)
    raw = _database_bytes(tmp_path)
    assert b"Dr Who" in raw
    assert PASSWORD.encode() not in raw


def test_sessions_expire_and_only_the_token_hash_is_stored(tmp_path: Path) -> None:
    now = [1_000_000.0]
    with HubStore(tmp_path / "hub.sqlite3", clock=lambda: now[0]) as store:
        store.add_reviewer("derm", "Dr Derm", PASSWORD)
        token, session = store.create_session("derm", ttl_seconds=3600)
        assert session.expires_at == now[0] + 3600
        assert store.get_session(token) == session
        assert store.get_session(token + "x") is None
        now[0] += 3599
        assert store.get_session(token) is not None
        now[0] += 2
        assert store.get_session(token) is None
    raw = _database_bytes(tmp_path)
    assert b"Dr Derm" in raw  # the records are readable here...
    assert token.encode() not in raw  # ...but the session token is not
