"""Update settings (no heavy imports: the edge server's settings include them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["UpdateSettings"]

_DAY = 86_400.0


class UpdateSettings(BaseModel):
    """How the clinic box checks for, verifies and installs update bundles."""

    check_hub: bool = Field(
        True,
        description="When a hub is configured (`sync set-hub`) and the box is provisioned "
        "with a trusted root, the server checks the hub's repository for updates.",
    )
    install: bool = Field(
        True, description="Install what the check finds (False: only log that it exists)."
    )
    interval_seconds: float = Field(6 * 3600.0, ge=10.0, description="Between hub checks.")
    first_check_seconds: float = Field(
        120.0, ge=0.0, description="After start-up (and the model load) before the first check."
    )
    online_max_age_days: float = Field(
        14.0,
        gt=0,
        le=42,
        description="Online, refuse timestamp metadata signed longer ago than this (a USB "
        "stick or local directory is accepted until the metadata expires: 6 weeks).",
    )
    max_bundle_bytes: int = Field(
        64 * 1024**3, ge=1024**2, description="Refuse bundles larger than this (disk guard)."
    )
    smoke_timeout_seconds: float = Field(
        900.0, ge=10.0, description="Load the model, one short inference, one retrieval."
    )
    request_timeout_seconds: int = Field(
        60, ge=1, le=3600, description="Connect / between-bytes timeout of hub downloads."
    )
