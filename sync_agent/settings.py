"""Sync settings (no heavy imports: the edge's settings include them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["SyncSettings"]


class SyncSettings(BaseModel):
    hub_url: str | None = Field(None, description="e.g. https://hub.example.org")
    enabled: bool = True
    interval_seconds: float = Field(20.0, gt=0, description="Idle pause when all is sent.")
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_cap_seconds: float = Field(300.0, gt=0, description="Longest pause between tries.")
    request_timeout_seconds: float = Field(120.0, gt=0)
    batch: int = Field(20, ge=1, le=1000, description="Cases sent per round.")
    not_ready_retry_seconds: float = Field(10.0, gt=0, description="Analysis still running.")
