"""Review-hub settings: one typed object, built by ``skinspector hub serve`` or by tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from skinspector.core.http_api import HttpLimits

__all__ = ["DEFAULT_HUB_DATA_DIR", "HubSettings"]

#: Where the hub keeps its database and keys unless told otherwise.
DEFAULT_HUB_DATA_DIR = Path("skinspector-hub")

_DAY = 86_400.0


class HubSettings(BaseModel):
    """Where the hub listens, where it keeps its data, and its limits.

    ``clock_skew_seconds`` is how far a clinic's signed-request timestamp may be from the
    hub's clock. Clinic boxes run offline for weeks and their clocks drift or are simply
    wrong, so the window is wide (30 days). The price: a captured signed request can be
    replayed within the window. That is acceptable because the only signed request is a
    review fetch, and every review in its answer is sealed to the clinic's own key: a
    replayer learns ciphertext, case ids (random hex) and how many reviews there are,
    never a diagnosis or a patient detail. Serve the hub over TLS to hide even that.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(DEFAULT_HUB_DATA_DIR, description="Database and hub keys.")
    host: str = Field("127.0.0.1", description="Listen address (put TLS in front).")
    port: int = Field(8090, ge=0, le=65535, description="Listen port (0 = any free port).")
    tls_cert: Path | None = Field(None, description="PEM certificate; with tls_key: HTTPS.")
    tls_key: Path | None = Field(None, description="PEM private key.")
    secure_cookies: bool | None = Field(
        None,
        description="Mark the session cookie Secure. Default: only when the hub serves TLS "
        "itself; set true behind a TLS-terminating reverse proxy.",
    )
    max_envelope_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest envelope accepted (413 beyond)."
    )
    max_form_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest reviewer form post (login, review)."
    )
    max_concurrent_uploads: int = Field(
        4, ge=1, le=1000, description="Envelope uploads received at once (503 beyond)."
    )
    upload_retry_after_seconds: int = Field(
        30, ge=1, description="Retry-After sent with 503 when uploads are at the cap."
    )
    max_cases_per_clinic_per_hour: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="New cases one clinic may deliver per hour (429 + Retry-After beyond; "
        "a clinic back online after weeks sends its backlog at this pace).",
    )
    max_bytes_per_clinic_per_day: int = Field(
        2 * 1024 * 1024 * 1024,
        ge=1024,
        description="Bytes one clinic may upload per day (429 + Retry-After beyond).",
    )
    require_signed_uploads: bool = Field(
        False,
        description="Refuse envelope uploads without signed request headers (X-Clinic-Id, "
        "X-Timestamp, X-Signature); agents of this version always sign.",
    )
    http: HttpLimits = Field(
        default_factory=HttpLimits,
        description="Socket timeouts and connection caps (slow clients, socket floods).",
    )
    clock_skew_seconds: float = Field(
        30 * _DAY, gt=0, description="Accepted distance of a signed request's timestamp."
    )
    updates_dir: Path | None = Field(
        None,
        description="The signed update repository served under /updates/ "
        "(default: DATA_DIR/updates; `skinspector bundle publish --repo` writes it).",
    )
    reviews_page_size: int = Field(
        100, ge=1, le=1000, description="Reviews per GET /api/v1/reviews answer."
    )
    session_ttl_seconds: float = Field(
        12 * 3600.0, ge=60.0, le=7 * _DAY, description="Reviewer session lifetime."
    )
    login_window_seconds: float = Field(
        900.0, ge=10.0, le=_DAY, description="Sliding window for counting failed logins."
    )
    max_login_failures_per_user: int = Field(
        5, ge=1, le=1000, description="Failed logins per username per window before 429."
    )
    trusted_proxy_header: str | None = Field(
        None,
        description="Behind a reverse proxy: the header it sets with the client address "
        "(e.g. X-Forwarded-For; its last entry is used). Read only from trusted_proxies.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Peer addresses of the reverse proxies whose header is believed.",
    )
    max_login_failures_per_ip: int = Field(
        20, ge=1, le=10_000, description="Failed logins per client address per window."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> HubSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def tls(self) -> bool:
        """True when the hub serves HTTPS itself."""
        return self.tls_cert is not None

    @property
    def cookies_secure(self) -> bool:
        """Whether the session cookie gets the ``Secure`` attribute."""
        return self.tls if self.secure_cookies is None else self.secure_cookies

    @property
    def database(self) -> Path:
        """The SQLite file."""
        return self.data_dir / "hub.sqlite3"

    @property
    def updates_repo(self) -> Path:
        """Where the update repository served under /updates/ lives."""
        return self.updates_dir or self.data_dir / "updates"

    @property
    def incoming_dir(self) -> Path:
        """Where envelope uploads are spooled while they arrive (0700, files 0600)."""
        return self.data_dir / "incoming"

    @property
    def keys_file(self) -> Path:
        """The hub's own private keys."""
        return self.data_dir / "hub-keys.json"
