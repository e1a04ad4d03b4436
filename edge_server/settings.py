"""Server settings: one typed object, loaded once by ``skinspector serve``.

Sources, highest first: command-line flags, ``SKINSPECTOR_*`` environment variables
(nested with ``__``, e.g. ``SKINSPECTOR_SERVER__PORT=8443``), then an optional TOML file
(``--config``).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from edge_server.mdns.settings import MdnsSettings
from edge_server.pairing import PairingSettings
from edge_server.safety.quality import QualitySettings
from skinspector.core.http_api import HttpLimits
from skinspector.core.settings import Settings
from sync_agent.settings import SyncSettings
from updates.settings import UpdateSettings

__all__ = ["AnalysisSettings", "EdgeSettings", "ServerSettings"]

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "skinspector_config_file", default=None
)


class AnalysisSettings(BaseModel):
    """The two-pass analysis."""

    findings_max_tokens: int = Field(160, ge=8, le=1024, description="Pass-1 answer length.")
    report_max_tokens: int = Field(640, ge=16, le=4096, description="Pass-2 answer length.")
    references: int = Field(4, ge=0, le=10, description="Retrieved chunks given to pass 2.")


class ServerSettings(BaseModel):
    host: str = Field("0.0.0.0", description="Listen address.")  # noqa: S104 - a LAN server
    port: int = Field(8080, ge=0, le=65535, description="Listen port (0 = any free port).")
    data_dir: Path = Field(Path("skinspector-data"), description="Cases, devices, bundles.")
    bundle_dir: Path | None = Field(
        None, description="A bundle to serve instead of the active one in the data directory."
    )
    queue_size: int = Field(8, ge=1, le=1000, description="Analyses queued or running at most.")
    max_photos: int = Field(3, ge=1, le=10)
    max_upload_bytes: int = Field(40 * 1024 * 1024, ge=1024, description="Whole request cap.")
    max_json_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="JSON request cap.")
    retry_after_seconds: int = Field(30, ge=1, description="Sent with 503 when the queue is full.")
    sse_keepalive_seconds: float = Field(15.0, gt=0, description="SSE comment interval.")
    tls_cert: Path | None = Field(None, description="PEM certificate; with tls_key enables TLS.")
    tls_key: Path | None = Field(None, description="PEM private key.")
    public_base_url: str | None = Field(
        None, description="URL phones use to reach the box (default: from the LAN address)."
    )
    case_visibility: Literal["clinic", "device"] = Field(
        "clinic",
        description="Which cases a paired phone may list and read: 'clinic' = every case "
        "of the box (shared clinic phones; the default), 'device' = only the cases that "
        "phone created. Photos are always per device.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra host names the box answers to (besides IP addresses, localhost, "
        "its host and mDNS names and public_base_url's host); any other Host header gets "
        "400 (DNS-rebinding guard).",
    )
    http: HttpLimits = Field(
        default_factory=HttpLimits,
        description="Socket timeouts and connection caps (slow clients, socket floods).",
    )
    mdns: MdnsSettings = Field(default_factory=MdnsSettings)
    pairing: PairingSettings = Field(default_factory=PairingSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    allow_prompt_mismatch: bool = Field(
        False,
        description="Load a bundle whose model was trained on another version of a prompt "
        "this server sends (warn instead of refusing).",
    )
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    updates: UpdateSettings = Field(default_factory=UpdateSettings)
    bundle_watch_seconds: float = Field(
        5.0,
        ge=0.0,
        description="How often to look at bundles/active.json for a newly activated bundle "
        "(hot reload); 0 turns watching off.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


class EdgeSettings(Settings):
    """Core settings plus the server's."""

    server: ServerSettings = Field(default_factory=ServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, config: Path | None = None, **overrides: Any) -> EdgeSettings:
        """Settings from flags (``overrides``), the environment and ``config``."""
        if config is not None and not config.is_file():
            raise FileNotFoundError(f"config file not found: {config}")
        token = _CONFIG_FILE.set(config)
        try:
            return cls(**overrides)
        finally:
            _CONFIG_FILE.reset(token)
