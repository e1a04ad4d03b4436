"""Sealed envelopes: round trips, the documented layout, and one test per tampering case.

Byte offsets below are taken from the format table in ``envelope``'s docstring, so these
tests also pin the specification.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from skinspector.core.errors import SkinspectorError
from sync_agent.envelope import (
    DEFAULT_MAX_BYTES,
    HPKE_OVERHEAD,
    EnvelopeHeader,
    envelope_digest,
    open_envelope,
    peek_header,
    seal,
)
from sync_agent.errors import (
    BadSignature,
    DecryptionFailed,
    EnvelopeError,
    EnvelopeTooLarge,
    MalformedEnvelope,
    SyncError,
    UnknownSender,
    UnsupportedVersion,
    WrongRecipient,
)
from sync_agent.keys import (
    SUITE_NAME,
    PartyKeys,
    PublicIdentity,
    generate_keys,
    hpke_suite,
)

OFF_VERSION = 4
OFF_KIND = 5
OFF_SUITE = 6
OFF_ID_LEN = 7
OFF_SENDER = 8
OFF_RECIPIENT = 24
OFF_CREATED = 40
OFF_EID = 48
SIG_LEN = 64

CREATED = 1_767_225_600.25
PAYLOAD = b'{"case": "lesion on left forearm", "photos": 3}'


@pytest.fixture(scope="module")
def clinic() -> PartyKeys:
    return generate_keys()


@pytest.fixture(scope="module")
def other_clinic() -> PartyKeys:
    return generate_keys()


@pytest.fixture(scope="module")
def hub() -> PartyKeys:
    return generate_keys()


@pytest.fixture(scope="module")
def attacker() -> PartyKeys:
    """Not enrolled at the hub, but knows every public identity."""
    return generate_keys()


Lookup = Callable[[str], PublicIdentity | None]


@pytest.fixture(scope="module")
def directory(clinic: PartyKeys, other_clinic: PartyKeys, hub: PartyKeys) -> Lookup:
    """The enrolled parties (the attacker is not one of them)."""
    return {p.party_id: p.public() for p in (clinic, other_clinic, hub)}.get


@pytest.fixture(scope="module")
def case_envelope(clinic: PartyKeys, hub: PartyKeys) -> bytes:
    return seal(
        PAYLOAD,
        kind="case",
        sender=clinic,
        recipient=hub.public(),
        envelope_id="case-0001",
        created_at=CREATED,
    )


def _flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def _replace(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def _resign(envelope: bytes, key: ed25519.Ed25519PrivateKey) -> bytes:
    """Drop the signature and sign everything before it with ``key`` (as the spec says)."""
    body = envelope[:-SIG_LEN]
    return body + key.sign(body)


def _header_end(envelope: bytes) -> int:
    return OFF_EID + envelope[OFF_ID_LEN] + 8


def _never_called(party_id: str) -> PublicIdentity | None:
    raise AssertionError(f"sender_lookup must not be called (asked for {party_id})")


def _open_at_hub(envelope: bytes, hub: PartyKeys, directory: Lookup) -> bytes:
    return open_envelope(envelope, recipient=hub, sender_lookup=directory).payload


# --- round trips ---------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    for cls in (
        MalformedEnvelope,
        UnsupportedVersion,
        EnvelopeTooLarge,
        WrongRecipient,
        UnknownSender,
        BadSignature,
        DecryptionFailed,
    ):
        assert issubclass(cls, EnvelopeError)
    assert issubclass(EnvelopeError, SyncError)
    assert issubclass(SyncError, SkinspectorError)


def test_round_trip_case(
    case_envelope: bytes, clinic: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    opened = open_envelope(case_envelope, recipient=hub, sender_lookup=directory)
    assert opened.payload == PAYLOAD
    assert opened.kind == "case"
    assert opened.sender_id == clinic.party_id
    assert opened.recipient_id == hub.party_id
    assert opened.envelope_id == "case-0001"
    assert opened.created_at == CREATED
    assert opened.digest == hashlib.sha256(case_envelope).hexdigest()
    assert opened.digest == envelope_digest(case_envelope)


def test_round_trip_review(clinic: PartyKeys, hub: PartyKeys, directory: Lookup) -> None:
    review = b'{"diagnosis": "seborrhoeic keratosis", "urgency": "routine"}'
    envelope = seal(
        review,
        kind="review",
        sender=hub,
        recipient=clinic.public(),
        envelope_id="review-7f3a.1",
        created_at=CREATED + 60,
    )
    opened = open_envelope(envelope, recipient=clinic, sender_lookup=directory)
    assert (opened.kind, opened.payload, opened.sender_id, opened.recipient_id) == (
        "review",
        review,
        hub.party_id,
        clinic.party_id,
    )
    assert opened.created_at == CREATED + 60


def test_round_trip_empty_payload(clinic: PartyKeys, hub: PartyKeys, directory: Lookup) -> None:
    envelope = seal(
        b"", kind="case", sender=clinic, recipient=hub.public(), envelope_id="e", created_at=0.0
    )
    assert _open_at_hub(envelope, hub, directory) == b""
    assert len(envelope) == 56 + 1 + HPKE_OVERHEAD + SIG_LEN


def test_round_trip_9mb_payload(clinic: PartyKeys, hub: PartyKeys, directory: Lookup) -> None:
    payload = bytes(range(256)) * (9 * 1024 * 1024 // 256)
    envelope = seal(
        payload,
        kind="case",
        sender=clinic,
        recipient=hub.public(),
        envelope_id="big",
        created_at=CREATED,
    )
    assert len(envelope) == len(payload) + 56 + len("big") + HPKE_OVERHEAD + SIG_LEN
    assert _open_at_hub(envelope, hub, directory) == payload


def test_layout_matches_specification(
    case_envelope: bytes, clinic: PartyKeys, hub: PartyKeys
) -> None:
    assert HPKE_OVERHEAD == 1120 + 16
    assert case_envelope[:4] == b"SKSE"
    assert case_envelope[OFF_VERSION] == 1
    assert case_envelope[OFF_KIND] == 0x01
    assert case_envelope[OFF_SUITE] == 0x01
    assert case_envelope[OFF_ID_LEN] == len("case-0001")
    assert case_envelope[OFF_SENDER:OFF_RECIPIENT].hex() == clinic.party_id
    assert case_envelope[OFF_RECIPIENT:OFF_CREATED].hex() == hub.party_id
    assert struct.unpack(">d", case_envelope[OFF_CREATED:OFF_EID]) == (CREATED,)
    assert case_envelope[OFF_EID : OFF_EID + 9] == b"case-0001"
    (ct_len,) = struct.unpack(">Q", case_envelope[OFF_EID + 9 : OFF_EID + 17])
    assert ct_len == len(PAYLOAD) + HPKE_OVERHEAD
    assert len(case_envelope) == OFF_EID + 9 + 8 + ct_len + SIG_LEN
    # The signature covers every byte before it.
    clinic.public().signing_key.verify(case_envelope[-SIG_LEN:], case_envelope[:-SIG_LEN])
    # The header is the HPKE info.
    header_end = _header_end(case_envelope)
    plaintext = hpke_suite().decrypt(
        case_envelope[header_end:-SIG_LEN], hub.kem_private_key, case_envelope[:header_end]
    )
    assert plaintext == PAYLOAD


def test_sealing_is_randomised(clinic: PartyKeys, hub: PartyKeys, directory: Lookup) -> None:
    def make() -> bytes:
        return seal(
            PAYLOAD,
            kind="case",
            sender=clinic,
            recipient=hub.public(),
            envelope_id="same",
            created_at=CREATED,
        )

    first, second = make(), make()
    assert first != second
    assert envelope_digest(first) != envelope_digest(second)
    assert _open_at_hub(first, hub, directory) == _open_at_hub(second, hub, directory) == PAYLOAD


def test_peek_header_reports_unverified_routing_fields(
    case_envelope: bytes, clinic: PartyKeys, hub: PartyKeys
) -> None:
    assert peek_header(case_envelope) == EnvelopeHeader(
        version=1,
        kind="case",
        suite=SUITE_NAME,
        sender_id=clinic.party_id,
        recipient_id=hub.party_id,
        envelope_id="case-0001",
        created_at=CREATED,
        ciphertext_length=len(PAYLOAD) + HPKE_OVERHEAD,
    )


def test_peek_header_does_not_verify(case_envelope: bytes) -> None:
    forged = _flip(case_envelope, len(case_envelope) - 1)
    assert peek_header(forged).envelope_id == "case-0001"


def test_peek_header_applies_size_cap_and_structure(case_envelope: bytes) -> None:
    with pytest.raises(EnvelopeTooLarge):
        peek_header(case_envelope, max_bytes=len(case_envelope) - 1)
    with pytest.raises(MalformedEnvelope):
        peek_header(case_envelope + b"\x00")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "diagnosis"}, "kind"),
        ({"envelope_id": ""}, "envelope_id"),
        ({"envelope_id": "../etc/passwd"}, "envelope_id"),
        ({"envelope_id": ".hidden"}, "envelope_id"),
        ({"envelope_id": "a/b"}, "envelope_id"),
        ({"envelope_id": "caf\u00e9"}, "envelope_id"),
        ({"envelope_id": "x" * 129}, "at most 128"),
        ({"created_at": math.nan}, "created_at"),
        ({"created_at": math.inf}, "created_at"),
    ],
)
def test_seal_rejects_bad_arguments(
    clinic: PartyKeys, hub: PartyKeys, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {
        "kind": "case",
        "sender": clinic,
        "recipient": hub.public(),
        "envelope_id": "ok",
        "created_at": CREATED,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        seal(PAYLOAD, **args)  # type: ignore[arg-type]


def test_longest_envelope_id_round_trips(
    clinic: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    eid = "A" * 128
    envelope = seal(
        PAYLOAD, kind="case", sender=clinic, recipient=hub.public(), envelope_id=eid, created_at=1
    )
    assert open_envelope(envelope, recipient=hub, sender_lookup=directory).envelope_id == eid


def test_open_rejects_non_positive_cap(case_envelope: bytes, hub: PartyKeys) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        open_envelope(case_envelope, recipient=hub, sender_lookup=_never_called, max_bytes=0)


# --- tampering: one named test per case ----------------------------------------------------


@pytest.mark.parametrize("where", ["kem-encapsulation", "aead-body", "aead-tag"])
def test_flipped_bit_in_ciphertext_is_bad_signature(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup, where: str
) -> None:
    """Caught by the signature, before decryption is even attempted."""
    start = _header_end(case_envelope)
    offset = {
        "kem-encapsulation": start + 10,
        "aead-body": start + 1120 + 3,
        "aead-tag": len(case_envelope) - SIG_LEN - 1,
    }[where]
    with pytest.raises(BadSignature):
        _open_at_hub(_flip(case_envelope, offset, 5), hub, directory)


@pytest.mark.parametrize("offset_from_end", [1, 32, 64])
def test_flipped_bit_in_signature_is_bad_signature(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup, offset_from_end: int
) -> None:
    with pytest.raises(BadSignature):
        _open_at_hub(_flip(case_envelope, len(case_envelope) - offset_from_end), hub, directory)


def test_kind_changed_from_case_to_review_is_bad_signature(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup
) -> None:
    tampered = _replace(case_envelope, OFF_KIND, b"\x02")
    assert peek_header(tampered).kind == "review"
    with pytest.raises(BadSignature):
        _open_at_hub(tampered, hub, directory)


def test_flipped_bit_in_kind_to_unknown_code_is_malformed(
    case_envelope: bytes, hub: PartyKeys
) -> None:
    with pytest.raises(MalformedEnvelope, match="kind"):
        open_envelope(_flip(case_envelope, OFF_KIND, 2), recipient=hub, sender_lookup=_never_called)


def test_flipped_bit_in_envelope_id_is_bad_signature(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup
) -> None:
    tampered = _flip(case_envelope, OFF_EID)  # "c" -> "b": still a valid id
    assert peek_header(tampered).envelope_id == "base-0001"
    with pytest.raises(BadSignature):
        _open_at_hub(tampered, hub, directory)


def test_envelope_id_with_forbidden_character_is_malformed(
    case_envelope: bytes, hub: PartyKeys
) -> None:
    tampered = _replace(case_envelope, OFF_EID + 4, b"/")
    with pytest.raises(MalformedEnvelope, match="envelope id"):
        open_envelope(tampered, recipient=hub, sender_lookup=_never_called)


def test_flipped_bit_in_created_at_is_bad_signature(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup
) -> None:
    tampered = _flip(case_envelope, OFF_EID - 1)  # lowest mantissa bit
    assert peek_header(tampered).created_at != CREATED
    with pytest.raises(BadSignature):
        _open_at_hub(tampered, hub, directory)


def test_non_finite_created_at_is_malformed(
    case_envelope: bytes, clinic: PartyKeys, hub: PartyKeys
) -> None:
    tampered = _resign(
        _replace(case_envelope, OFF_CREATED, struct.pack(">d", math.nan)), clinic.signing_key
    )
    with pytest.raises(MalformedEnvelope, match="created_at"):
        open_envelope(tampered, recipient=hub, sender_lookup=_never_called)


def test_flipped_bit_in_sender_id_is_unknown_sender(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup
) -> None:
    with pytest.raises(UnknownSender):
        _open_at_hub(_flip(case_envelope, OFF_SENDER + 7), hub, directory)


def test_sender_id_rewritten_to_another_enrolled_party_is_bad_signature(
    case_envelope: bytes, other_clinic: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    tampered = _replace(case_envelope, OFF_SENDER, bytes.fromhex(other_clinic.party_id))
    with pytest.raises(BadSignature):
        _open_at_hub(tampered, hub, directory)


def test_flipped_bit_in_recipient_id_is_wrong_recipient(
    case_envelope: bytes, hub: PartyKeys
) -> None:
    with pytest.raises(WrongRecipient):
        open_envelope(
            _flip(case_envelope, OFF_RECIPIENT + 3), recipient=hub, sender_lookup=_never_called
        )


def test_flipped_bit_in_ciphertext_length_is_malformed(
    case_envelope: bytes, hub: PartyKeys
) -> None:
    length_field_last_byte = _header_end(case_envelope) - 1
    with pytest.raises(MalformedEnvelope):
        open_envelope(
            _flip(case_envelope, length_field_last_byte),
            recipient=hub,
            sender_lookup=_never_called,
        )


def test_flipped_bit_in_envelope_id_length_is_malformed(
    case_envelope: bytes, hub: PartyKeys
) -> None:
    with pytest.raises(MalformedEnvelope):
        open_envelope(_flip(case_envelope, OFF_ID_LEN), recipient=hub, sender_lookup=_never_called)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(0, id="empty"),
        pytest.param(3, id="in-magic"),
        pytest.param(5, id="after-version"),
        pytest.param(47, id="in-fixed-header"),
        pytest.param(OFF_EID + 4, id="in-envelope-id"),
        pytest.param(OFF_EID + 9 + 8, id="end-of-header"),
        pytest.param(-SIG_LEN - 100, id="in-ciphertext"),
        pytest.param(-SIG_LEN, id="no-signature"),
        pytest.param(-1, id="in-signature"),
    ],
)
def test_truncated_envelope_is_malformed(case_envelope: bytes, hub: PartyKeys, cut: int) -> None:
    truncated = case_envelope[:cut]
    assert len(truncated) < len(case_envelope)
    with pytest.raises(MalformedEnvelope):
        open_envelope(truncated, recipient=hub, sender_lookup=_never_called)


@pytest.mark.parametrize("garbage", [b"\x00", b"trailing", b"\xff" * 4096])
def test_trailing_garbage_is_malformed(
    case_envelope: bytes, hub: PartyKeys, garbage: bytes
) -> None:
    with pytest.raises(MalformedEnvelope, match="trailing"):
        open_envelope(case_envelope + garbage, recipient=hub, sender_lookup=_never_called)


@pytest.mark.parametrize("magic", [b"SKSF", b"\x00\x00\x00\x00", b"PK\x03\x04"])
def test_wrong_magic_is_malformed(case_envelope: bytes, hub: PartyKeys, magic: bytes) -> None:
    with pytest.raises(MalformedEnvelope, match="magic"):
        open_envelope(_replace(case_envelope, 0, magic), recipient=hub, sender_lookup=_never_called)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unsupported_version(case_envelope: bytes, hub: PartyKeys, version: int) -> None:
    with pytest.raises(UnsupportedVersion, match="version"):
        open_envelope(
            _replace(case_envelope, OFF_VERSION, bytes([version])),
            recipient=hub,
            sender_lookup=_never_called,
        )


def test_unsupported_version_needs_only_magic_and_version_byte(hub: PartyKeys) -> None:
    with pytest.raises(UnsupportedVersion):
        open_envelope(b"SKSE\x02", recipient=hub, sender_lookup=_never_called)


def test_unsupported_suite_id(case_envelope: bytes, hub: PartyKeys) -> None:
    with pytest.raises(UnsupportedVersion, match="suite"):
        open_envelope(
            _replace(case_envelope, OFF_SUITE, b"\x02"), recipient=hub, sender_lookup=_never_called
        )


def test_oversized_envelope_is_rejected_before_parsing(hub: PartyKeys) -> None:
    """A huge buffer of garbage: the cap fires first (parsing it would say "malformed")."""
    huge = bytes(DEFAULT_MAX_BYTES + 1)
    with pytest.raises(EnvelopeTooLarge):
        open_envelope(huge, recipient=hub, sender_lookup=_never_called)
    with pytest.raises(EnvelopeTooLarge):
        peek_header(huge)
    # The same garbage under the cap is malformed, so the order above is meaningful.
    with pytest.raises(MalformedEnvelope):
        open_envelope(huge[:1000], recipient=hub, sender_lookup=_never_called)


def test_size_cap_is_inclusive(case_envelope: bytes, hub: PartyKeys, directory: Lookup) -> None:
    size = len(case_envelope)
    with pytest.raises(EnvelopeTooLarge):
        open_envelope(case_envelope, recipient=hub, sender_lookup=directory, max_bytes=size - 1)
    opened = open_envelope(case_envelope, recipient=hub, sender_lookup=directory, max_bytes=size)
    assert opened.payload == PAYLOAD


def test_envelope_for_another_recipient_is_wrong_recipient(
    clinic: PartyKeys, other_clinic: PartyKeys, hub: PartyKeys
) -> None:
    envelope = seal(
        PAYLOAD,
        kind="case",
        sender=clinic,
        recipient=other_clinic.public(),
        envelope_id="misrouted",
        created_at=CREATED,
    )
    with pytest.raises(WrongRecipient):
        open_envelope(envelope, recipient=hub, sender_lookup=_never_called)


def test_unknown_sender(attacker: PartyKeys, hub: PartyKeys, directory: Lookup) -> None:
    """An honest envelope from a party the hub never enrolled."""
    envelope = seal(
        PAYLOAD,
        kind="case",
        sender=attacker,
        recipient=hub.public(),
        envelope_id="hello",
        created_at=CREATED,
    )
    with pytest.raises(UnknownSender):
        _open_at_hub(envelope, hub, directory)


def test_sender_lookup_returning_another_identity_is_unknown_sender(
    case_envelope: bytes, other_clinic: PartyKeys, hub: PartyKeys
) -> None:
    with pytest.raises(UnknownSender):
        open_envelope(case_envelope, recipient=hub, sender_lookup=lambda _id: other_clinic.public())


def test_valid_signature_by_a_different_key_claiming_the_sender_id_is_bad_signature(
    case_envelope: bytes, attacker: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    """The clinic's own envelope, re-signed by someone else: a valid Ed25519 signature."""
    forged = _resign(case_envelope, attacker.signing_key)
    attacker.public().signing_key.verify(forged[-SIG_LEN:], forged[:-SIG_LEN])
    with pytest.raises(BadSignature):
        _open_at_hub(forged, hub, directory)


def test_attacker_envelope_with_own_encapsulation_claiming_clinic_id_is_bad_signature(
    clinic: PartyKeys, attacker: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    """An attacker who knows the hub's public key builds a well-formed envelope by hand.

    The HPKE ciphertext is genuine (it decrypts under the header claiming the clinic), so
    only the signature check stands between it and acceptance.
    """
    payload = b'{"case": "injected"}'
    eid = b"forged-1"
    ct_len = len(payload) + HPKE_OVERHEAD
    header = (
        struct.pack(
            ">4sBBBB16s16sd",
            b"SKSE",
            1,
            0x01,
            0x01,
            len(eid),
            bytes.fromhex(clinic.party_id),
            bytes.fromhex(hub.party_id),
            CREATED,
        )
        + eid
        + struct.pack(">Q", ct_len)
    )
    ciphertext = hpke_suite().encrypt(payload, hub.public().kem_key, header)
    forged = header + ciphertext + attacker.signing_key.sign(header + ciphertext)
    assert peek_header(forged).sender_id == clinic.party_id
    assert hpke_suite().decrypt(ciphertext, hub.kem_private_key, header) == payload
    with pytest.raises(BadSignature):
        _open_at_hub(forged, hub, directory)


def test_attacker_resealed_envelope_with_clinic_id_is_bad_signature(
    clinic: PartyKeys, attacker: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    """Same attack through ``seal``: seal as self, relabel the sender, re-sign with own key."""
    own = seal(
        b"injected",
        kind="case",
        sender=attacker,
        recipient=hub.public(),
        envelope_id="case-0001",
        created_at=CREATED,
    )
    forged = _resign(
        _replace(own, OFF_SENDER, bytes.fromhex(clinic.party_id)), attacker.signing_key
    )
    with pytest.raises(BadSignature):
        _open_at_hub(forged, hub, directory)


def test_header_swapped_with_another_envelopes_header_is_bad_signature(
    clinic: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    def make(eid: str, payload: bytes) -> bytes:
        return seal(
            payload,
            kind="case",
            sender=clinic,
            recipient=hub.public(),
            envelope_id=eid,
            created_at=CREATED,
        )

    first = make("case-0001", b"first patient!")
    second = make("case-0002", b"second patient")
    split = _header_end(first)
    assert split == _header_end(second)
    assert len(first) == len(second)
    # Header of the first, ciphertext and signature of the second.
    with pytest.raises(BadSignature):
        _open_at_hub(first[:split] + second[split:], hub, directory)
    # Header and signature of the first, ciphertext of the second.
    with pytest.raises(BadSignature):
        _open_at_hub(first[:split] + second[split:-SIG_LEN] + first[-SIG_LEN:], hub, directory)


def test_enrolled_insider_resigning_another_clinics_envelope_fails_decryption(
    case_envelope: bytes, other_clinic: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    """An enrolled clinic relabels a captured envelope as its own and signs it.

    The signature is valid for the claimed sender, but the header is the HPKE info, so the
    ciphertext does not decrypt: the payload cannot be passed off as the insider's.
    """
    relabelled = _resign(
        _replace(case_envelope, OFF_SENDER, bytes.fromhex(other_clinic.party_id)),
        other_clinic.signing_key,
    )
    with pytest.raises(DecryptionFailed):
        _open_at_hub(relabelled, hub, directory)


def test_header_edited_and_resigned_by_real_sender_fails_decryption(
    case_envelope: bytes, clinic: PartyKeys, hub: PartyKeys, directory: Lookup
) -> None:
    edited = _resign(_replace(case_envelope, OFF_EID, b"X"), clinic.signing_key)
    with pytest.raises(DecryptionFailed):
        _open_at_hub(edited, hub, directory)


def test_recipient_with_rotated_kem_key_fails_decryption(
    case_envelope: bytes, hub: PartyKeys, directory: Lookup
) -> None:
    """Same party id (signing key), different KEM key: verified but undecryptable."""
    rotated = PartyKeys(
        hub.signing_key, mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    )
    assert rotated.party_id == hub.party_id
    with pytest.raises(DecryptionFailed):
        _open_at_hub(case_envelope, rotated, directory)


def test_error_messages_never_contain_payload(
    case_envelope: bytes, clinic: PartyKeys, other_clinic: PartyKeys, hub: PartyKeys
) -> None:
    lookups: dict[str, Lookup] = {
        "bad-signature": {clinic.party_id: other_clinic.public()}.get,
        "unknown": lambda _id: None,
    }
    messages = []
    for lookup in lookups.values():
        with pytest.raises(EnvelopeError) as info:
            open_envelope(case_envelope, recipient=hub, sender_lookup=lookup)
        messages.append(str(info.value))
    relabelled = _resign(_replace(case_envelope, OFF_EID, b"X"), clinic.signing_key)
    with pytest.raises(DecryptionFailed) as failed:
        open_envelope(
            relabelled, recipient=hub, sender_lookup={clinic.party_id: clinic.public()}.get
        )
    messages.append(str(failed.value))
    for message in messages:
        assert "lesion" not in message
        assert "forearm" not in message
