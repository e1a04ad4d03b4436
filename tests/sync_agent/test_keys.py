"""Party keys: generation, private key files, public identity documents."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skinspector.core.errors import SkinspectorError
from sync_agent.envelope import open_envelope, seal
from sync_agent.errors import IdentityError, KeyFileError, SyncError
from sync_agent.keys import (
    KEM_PUBLIC_LEN,
    SUITE_NAME,
    PartyKeys,
    PublicIdentity,
    generate_keys,
    party_id_for,
)


@pytest.fixture(scope="module")
def clinic() -> PartyKeys:
    return generate_keys()


@pytest.fixture(scope="module")
def hub() -> PartyKeys:
    return generate_keys()


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Prove the 0600 mode does not depend on the caller's umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _identity_doc(identity: PublicIdentity) -> dict[str, object]:
    doc = json.loads(identity.to_json())
    assert isinstance(doc, dict)
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- generation and identity ---------------------------------------------------------------


def test_errors_are_project_errors() -> None:
    assert issubclass(KeyFileError, SyncError)
    assert issubclass(IdentityError, SyncError)
    assert issubclass(SyncError, SkinspectorError)


def test_generated_parties_are_distinct(clinic: PartyKeys, hub: PartyKeys) -> None:
    assert clinic.party_id != hub.party_id
    assert clinic.public().kem_public != hub.public().kem_public


def test_party_id_is_sha256_prefix_of_signing_key(clinic: PartyKeys) -> None:
    identity = clinic.public()
    expected = hashlib.sha256(identity.signing_public).hexdigest()[:32]
    assert identity.party_id == expected == clinic.party_id == party_id_for(identity.signing_public)
    assert len(identity.party_id) == 32


def test_public_identity_fields(clinic: PartyKeys) -> None:
    identity = clinic.public()
    assert len(identity.signing_public) == 32
    assert len(identity.kem_public) == KEM_PUBLIC_LEN == 1184 + 32
    assert len(identity.kem_binding) == 64
    assert identity.suite == SUITE_NAME == "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"


def test_public_is_deterministic(clinic: PartyKeys) -> None:
    rebuilt = PartyKeys(clinic.signing_key, clinic.kem_mlkem, clinic.kem_x25519)
    assert rebuilt.public() == clinic.public()


def test_repr_shows_no_key_material(clinic: PartyKeys) -> None:
    text = repr(clinic)
    assert clinic.party_id in text
    secret = _b64(clinic.signing_key.private_bytes_raw())
    assert secret not in text


def test_identity_json_round_trip(clinic: PartyKeys) -> None:
    identity = clinic.public()
    text = identity.to_json()
    assert PublicIdentity.from_json(text) == identity
    assert json.loads(text)["party_id"] == clinic.party_id


def test_identity_json_with_tampered_party_id_is_refused(clinic: PartyKeys) -> None:
    doc = _identity_doc(clinic.public())
    party_id = str(doc["party_id"])
    doc["party_id"] = ("0" if party_id[0] != "0" else "1") + party_id[1:]
    with pytest.raises(IdentityError, match="party_id"):
        PublicIdentity.from_json(json.dumps(doc))


def test_identity_json_claiming_another_party_id_is_refused(
    clinic: PartyKeys, hub: PartyKeys
) -> None:
    doc = _identity_doc(clinic.public())
    doc["party_id"] = hub.party_id
    with pytest.raises(IdentityError, match="party_id"):
        PublicIdentity.from_json(json.dumps(doc))


def test_identity_json_with_swapped_kem_key_is_refused(clinic: PartyKeys, hub: PartyKeys) -> None:
    """A KEM key substituted in transit keeps the party_id but breaks the binding."""
    doc = _identity_doc(clinic.public())
    doc["kem_public"] = _b64(hub.public().kem_public)
    with pytest.raises(IdentityError, match="kem_binding"):
        PublicIdentity.from_json(json.dumps(doc))


def test_identity_json_with_swapped_signing_key_is_refused(
    clinic: PartyKeys, hub: PartyKeys
) -> None:
    """Replacing the signing key (and recomputing party_id) breaks the KEM binding."""
    doc = _identity_doc(clinic.public())
    doc["signing_public"] = _b64(hub.public().signing_public)
    doc["party_id"] = hub.party_id
    with pytest.raises(IdentityError, match="kem_binding"):
        PublicIdentity.from_json(json.dumps(doc))


@pytest.mark.parametrize(
    ("field", "length"), [("signing_public", 31), ("kem_public", 1215), ("kem_binding", 65)]
)
def test_identity_json_with_wrong_length_is_refused(
    clinic: PartyKeys, field: str, length: int
) -> None:
    doc = _identity_doc(clinic.public())
    doc[field] = _b64(b"\x01" * length)
    with pytest.raises(IdentityError, match=field):
        PublicIdentity.from_json(json.dumps(doc))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(signing_public="not base64!"), id="bad-base64"),
        pytest.param(lambda d: d.update(suite="X25519/HKDF-SHA256/AES-128-GCM"), id="suite"),
        pytest.param(lambda d: d.update(version=2), id="version"),
        pytest.param(lambda d: d.update(format="something-else"), id="format"),
        pytest.param(lambda d: d.update(extra="x"), id="extra-field"),
        pytest.param(lambda d: d.pop("kem_binding"), id="missing-field"),
        pytest.param(lambda d: d.update(party_id=7), id="party-id-type"),
    ],
)
def test_identity_json_with_bad_field_is_refused(
    clinic: PartyKeys, mutate: Callable[[dict[str, object]], object]
) -> None:
    doc = _identity_doc(clinic.public())
    mutate(doc)
    with pytest.raises(IdentityError):
        PublicIdentity.from_json(json.dumps(doc))


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"x"', "x" * 70_000])
def test_identity_json_not_an_object_is_refused(text: str) -> None:
    with pytest.raises(IdentityError):
        PublicIdentity.from_json(text)


def test_private_key_file_is_not_accepted_as_identity(clinic: PartyKeys, tmp_path: Path) -> None:
    path = tmp_path / "clinic.keys.json"
    clinic.save(path)
    with pytest.raises(IdentityError, match="format"):
        PublicIdentity.from_json(path.read_text())


def test_identity_with_small_order_x25519_key_is_refused(clinic: PartyKeys) -> None:
    identity = clinic.public()
    kem_public = identity.kem_public[:1184] + b"\x00" * 32
    binding = clinic.signing_key.sign(
        b"skinspector-sync/identity-kem-binding/v1\x00" + SUITE_NAME.encode() + b"\x00" + kem_public
    )
    with pytest.raises(IdentityError, match="small-order"):
        PublicIdentity(identity.party_id, identity.signing_public, kem_public, SUITE_NAME, binding)


def test_identity_with_invalid_mlkem_key_is_refused(clinic: PartyKeys) -> None:
    identity = clinic.public()
    kem_public = b"\xff" * 1184 + identity.kem_public[1184:]
    with pytest.raises(IdentityError, match="not a valid key"):
        PublicIdentity(
            identity.party_id, identity.signing_public, kem_public, SUITE_NAME, identity.kem_binding
        )


def test_identity_binding_signature_is_checked_on_construction(clinic: PartyKeys) -> None:
    identity = clinic.public()
    forged = bytes([identity.kem_binding[0] ^ 1]) + identity.kem_binding[1:]
    with pytest.raises(IdentityError, match="kem_binding"):
        PublicIdentity(
            identity.party_id, identity.signing_public, identity.kem_public, SUITE_NAME, forged
        )


# --- private key files ---------------------------------------------------------------------


def test_key_file_round_trip(clinic: PartyKeys, hub: PartyKeys, tmp_path: Path) -> None:
    """The reloaded keys are the same party and open what was sealed to the originals."""
    path = tmp_path / "hub.keys.json"
    hub.save(path)
    loaded = PartyKeys.load(path)
    assert loaded.party_id == hub.party_id
    assert loaded.public() == hub.public()
    envelope = seal(
        b"case bytes",
        kind="case",
        sender=clinic,
        recipient=hub.public(),
        envelope_id="e1",
        created_at=1.0,
    )
    opened = open_envelope(
        envelope, recipient=loaded, sender_lookup={clinic.party_id: clinic.public()}.get
    )
    assert opened.payload == b"case bytes"


def test_key_file_is_mode_0600(clinic: PartyKeys, tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "clinic.keys.json"
    clinic.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_save_leaves_no_temporary_files(clinic: PartyKeys, tmp_path: Path) -> None:
    clinic.save(tmp_path / "k.json")
    clinic.save(tmp_path / "k.json", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]


def test_key_file_save_refuses_to_overwrite_by_default(
    clinic: PartyKeys, hub: PartyKeys, tmp_path: Path
) -> None:
    path = tmp_path / "k.json"
    clinic.save(path)
    with pytest.raises(KeyFileError, match="already exists"):
        hub.save(path)
    assert PartyKeys.load(path).party_id == clinic.party_id
    hub.save(path, overwrite=True)
    assert PartyKeys.load(path).party_id == hub.party_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_save_into_missing_folder(clinic: PartyKeys, tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="folder"):
        clinic.save(tmp_path / "missing" / "k.json")


def test_key_file_save_onto_a_folder(clinic: PartyKeys, tmp_path: Path) -> None:
    (tmp_path / "k.json").mkdir()
    with pytest.raises(KeyFileError):
        clinic.save(tmp_path / "k.json", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]


def test_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        PartyKeys.load(tmp_path / "absent.json")


def test_key_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="regular file"):
        PartyKeys.load(tmp_path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o770, 0o602])
def test_key_file_with_open_permissions_is_refused(
    clinic: PartyKeys, tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "k.json"
    clinic.save(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"{mode:04o}"):
        PartyKeys.load(path)


def test_key_file_with_owner_only_read_is_accepted(clinic: PartyKeys, tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    clinic.save(path)
    path.chmod(0o400)
    assert PartyKeys.load(path).party_id == clinic.party_id


def _write_key_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _key_doc(keys: PartyKeys, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "src.json"
    keys.save(path, overwrite=True)
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    "text", ["", "{", "{}", "[1, 2]", '{"format": "skinspector-sync-private-keys"}', "x" * 70_000]
)
def test_key_file_with_corrupt_json_is_refused(tmp_path: Path, text: str) -> None:
    path = _write_key_file(tmp_path / "k.json", text)
    with pytest.raises(KeyFileError, match="corrupt key file"):
        PartyKeys.load(path)


def test_key_file_with_binary_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        PartyKeys.load(path)


def test_key_file_truncated_is_refused(clinic: PartyKeys, tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    clinic.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeyFileError, match="corrupt key file"):
        PartyKeys.load(path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("signing_private", _b64(b"\x01" * 31)),
        ("kem_mlkem768_seed", _b64(b"\x01" * 65)),
        ("kem_x25519_private", "!!!!"),
        ("kem_x25519_private", 12),
        ("suite", "X25519/HKDF-SHA256/AES-128-GCM"),
        ("version", 2),
        ("format", "skinspector-sync-identity"),
    ],
)
def test_key_file_with_bad_field_is_refused(
    clinic: PartyKeys, tmp_path: Path, field: str, value: object
) -> None:
    doc = _key_doc(clinic, tmp_path)
    doc[field] = value
    path = _write_key_file(tmp_path / "k.json", json.dumps(doc))
    with pytest.raises(KeyFileError, match="corrupt key file"):
        PartyKeys.load(path)


def test_key_file_with_mismatched_party_id_is_refused(
    clinic: PartyKeys, hub: PartyKeys, tmp_path: Path
) -> None:
    """Keys swapped between files are caught; the message carries no key material."""
    doc = _key_doc(clinic, tmp_path)
    doc["signing_private"] = _b64(hub.signing_key.private_bytes_raw())
    path = _write_key_file(tmp_path / "k.json", json.dumps(doc))
    with pytest.raises(KeyFileError, match="party_id") as info:
        PartyKeys.load(path)
    for secret in (str(doc["signing_private"]), str(doc["kem_mlkem768_seed"])):
        assert secret not in str(info.value)


def test_identity_file_is_not_accepted_as_key_file(clinic: PartyKeys, tmp_path: Path) -> None:
    path = _write_key_file(tmp_path / "k.json", clinic.public().to_json())
    with pytest.raises(KeyFileError, match="corrupt key file"):
        PartyKeys.load(path)
