"""``run_update``: refresh -> find -> download -> verify -> install -> smoke-test -> switch.

The one entry point that ``skinspector update`` and the clinic server's periodic hub check
both call. Every refusal (untrusted metadata, tampered or endless download, a bundle file
that does not match its manifest, a failed smoke test) raises before the pointer to the
active bundle is touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from skinspector import __version__
from skinspector.core.bundle_manifest import parse_version
from updates.client import AvailableBundle, UpdateClient
from updates.fetcher import UpdateSource
from updates.settings import UpdateSettings
from updates.slots import SlotStore, StepHook, check_compatible
from updates.smoke import subprocess_smoke_test

__all__ = ["UpdateOutcome", "bundles_dir", "run_update", "updates_dir"]

SmokeTest = Callable[[Path], object]


def bundles_dir(data_dir: Path) -> Path:
    return data_dir / "bundles"


def updates_dir(data_dir: Path) -> Path:
    return data_dir / "updates"


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    status: Literal["installed", "up-to-date", "available", "held-back", "none-published"]
    version: str | None  # the newest published version (or installed one)
    active_version: str | None  # what is active after this call
    previous_version: str | None = None
    slot: str | None = None
    intended_use: str | None = None

    def describe(self) -> str:
        if self.status == "installed":
            return (
                f"installed bundle {self.version} into {self.slot} and made it active "
                f"(previous: {self.previous_version or 'none'})"
            )
        if self.status == "available":
            return f"bundle {self.version} is available (active: {self.active_version or 'none'})"
        if self.status == "held-back":
            return f"bundle {self.version} was rolled back here before; not reinstalled"
        if self.status == "none-published":
            return "the repository has no bundle yet"
        return f"up to date (active: {self.active_version})"


def _newer(available: str, active: str | None) -> bool:
    new = parse_version(available)
    if new is None:
        return False
    current = parse_version(active) if active else None
    return current is None or new > current


def client_for(data_dir: Path, settings: UpdateSettings) -> UpdateClient:
    return UpdateClient(
        updates_dir(data_dir),
        online_max_age=timedelta(days=settings.online_max_age_days),
        max_bundle_bytes=settings.max_bundle_bytes,
    )


def run_update(
    data_dir: Path,
    source: UpdateSource,
    *,
    settings: UpdateSettings | None = None,
    client: UpdateClient | None = None,
    smoke: SmokeTest | None = None,
    check_only: bool = False,
    hook: StepHook | None = None,
    server_version: str = __version__,
    progress: bool = False,
) -> UpdateOutcome:
    """Bring ``data_dir`` to the newest bundle ``source`` publishes (see module doc)."""
    settings = settings or UpdateSettings()
    client = client or client_for(data_dir, settings)
    slots = SlotStore(bundles_dir(data_dir))
    if smoke is None:

        def smoke(bundle: Path) -> object:
            return subprocess_smoke_test(bundle, timeout=settings.smoke_timeout_seconds)

    with slots.lock():
        updater = client.refresh(source)
        available: AvailableBundle | None = client.latest(updater, source)
        state = slots.state()
        active_version = slots.version(state.active)
        if available is None:
            return UpdateOutcome("none-published", None, active_version)
        if not _newer(available.version, active_version):
            return UpdateOutcome("up-to-date", available.version, active_version)
        if available.version in state.held_back:
            return UpdateOutcome("held-back", available.version, active_version)
        check_compatible(available.min_server_version, server_version)
        if check_only:
            return UpdateOutcome(
                "available", available.version, active_version, intended_use=available.intended_use
            )
        slots.root.mkdir(parents=True, exist_ok=True)
        download_dir = slots.root / "download"
        shutil.rmtree(download_dir, ignore_errors=True)
        download_dir.mkdir()
        try:
            archive = client.download(
                source, available, download_dir / "bundle.tar", progress=progress
            )
            installed = slots.install(
                archive,
                smoke=smoke,
                hook=hook or (lambda step: None),
                server_version=server_version,
                progress=progress,
            )
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)
        return UpdateOutcome(
            "installed",
            installed.version,
            installed.version,
            installed.previous_version,
            installed.slot,
            available.intended_use,
        )
