"""Pairing codes: their format, lifetime and limits, and why a redemption fails.

A phone must pair with the box before it may use the API. The box shows a short numeric
pairing code (typed, or scanned as a QR code); the phone redeems it once, together with a
device name, and receives a device token (:mod:`edge_server.device_tokens`). This module
holds what a code is (:class:`PairingSettings`, :class:`PairingCode`), how codes and device
names are drawn and cleaned up, and the errors a redemption can end in. The codes
themselves are stored and redeemed by :class:`edge_server.devices.DeviceRegistry`; failed
attempts are limited by :mod:`edge_server.pairing_limits`.
"""

from __future__ import annotations

import math
import secrets
import unicodedata
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from skinspector.core.errors import InputError

__all__ = [
    "MAX_CODE_INPUT_LENGTH",
    "MAX_DEVICE_NAME_LENGTH",
    "ExpiredPairingCode",
    "InvalidDeviceName",
    "InvalidPairingCode",
    "PairingCode",
    "PairingError",
    "PairingRateLimited",
    "PairingSettings",
    "new_pairing_code",
    "normalize_pairing_code",
    "validate_device_name",
]

#: Longest accepted device name, in characters, after stripping.
MAX_DEVICE_NAME_LENGTH = 64

#: A typed code longer than this cannot be valid and is rejected without hashing it.
MAX_CODE_INPUT_LENGTH = 64


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


def new_pairing_code(length: int) -> str:
    """A uniformly random ``length``-digit decimal string (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def normalize_pairing_code(code: str) -> str:
    """Drop surrounding blanks and grouping (``"1234 5678"``, ``"1234-5678"``).

    Non-ASCII decimal digits (e.g. Arabic-Indic ones from a localized keyboard) are
    mapped to ASCII so the hash matches.
    """
    cleaned = "".join(code.split()).replace("-", "")
    if cleaned.isdecimal():
        cleaned = "".join(str(unicodedata.decimal(char)) for char in cleaned)
    return cleaned


def validate_device_name(name: str) -> str:
    """NFC-normalized, stripped name of 1-64 printable characters, or InvalidDeviceName."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(cleaned) <= MAX_DEVICE_NAME_LENGTH or not cleaned.isprintable():
        raise InvalidDeviceName
    return cleaned
