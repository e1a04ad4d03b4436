"""Device tokens: what a paired phone holds, and the device record it maps to.

Redeeming a pairing code issues a random bearer token (:class:`IssuedDevice`, the only
time the token exists in clear); every later request carries it, and
:meth:`edge_server.devices.DeviceRegistry.authenticate` maps it back to a :class:`Device`.
Tokens carry ``PairingSettings.token_bytes`` (32 by default: 256 bits) of entropy, so the
SHA-256 the registry stores reveals nothing useful.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = [
    "LAST_SEEN_INTERVAL_SECONDS",
    "MAX_TOKEN_LENGTH",
    "Device",
    "IssuedDevice",
    "issue_device",
    "last_seen_is_stale",
    "plausible_token",
]

#: ``last_seen`` is rewritten at most this often per device (no write per request).
LAST_SEEN_INTERVAL_SECONDS = 60.0

#: A presented token longer than this cannot be valid and is rejected without hashing it.
MAX_TOKEN_LENGTH = 256


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


def issue_device(name: str, token_bytes: int) -> IssuedDevice:
    """A new device id (64 random bits, hex) and a URL-safe token of ``token_bytes``."""
    return IssuedDevice(
        device_id=secrets.token_hex(8),
        name=name,
        token=secrets.token_urlsafe(token_bytes),
    )


def plausible_token(token: str) -> bool:
    """Whether ``token`` is worth looking up (not empty, not absurdly long)."""
    return bool(token) and len(token) <= MAX_TOKEN_LENGTH


def last_seen_is_stale(device: Device, now: float) -> bool:
    """Whether ``last_seen`` should be rewritten: never set, or at least
    :data:`LAST_SEEN_INTERVAL_SECONDS` away from ``now`` (in either direction, so a clock
    that jumped back is corrected)."""
    return device.last_seen is None or abs(now - device.last_seen) >= LAST_SEEN_INTERVAL_SECONDS
