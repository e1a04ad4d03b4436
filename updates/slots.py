"""A/B slots for installed bundles, and the atomic switch between them.

Layout of ``<data-dir>/bundles/``::

    active.json     the pointer: {"bundle": "slot-b", "previous": "slot-a", ...}
    serving.json    the slot the server is running (written by the server)
    slot-a/ slot-b/ installed bundles (bundle.json + every file it lists)
    staging/        downloads and unpacking in progress (wiped by the next update)
    .lock           one update or rollback at a time

``active.json`` keeps the ``{"bundle": NAME}`` shape the server has always read, so a
pointer written before slots existed still works (its bundle becomes the previous one
after the first update).

Installing (``SlotStore.install``), each step durable before the next:

1. unpack the verified archive into ``staging/new`` (every file checked against the
   manifest, fsynced). If the server had to fall back to the previous slot because the
   active one failed to load (``serving.json``), the pointer first makes that fallback
   official, so the broken slot is the one replaced: the slot a server runs is never
   touched;
2. if the inactive slot is the pointer's ``previous``, rewrite the pointer without it
   (the slot is about to be replaced, so it must no longer be a fallback);
3. delete the inactive slot, rename ``staging/new`` into its place, fsync ``bundles/``;
4. smoke-test the new slot; on failure delete it and stop (the active bundle never
   changed);
5. write the new pointer atomically (temp file, fsync, rename, fsync): active = the new
   slot, previous = the old active one.

A crash (power cut, ``kill -9``) before step 5 leaves the old pointer, naming the old
bundle, untouched and complete; after it, the new bundle is complete. Never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skinspector import __version__
from skinspector.core.bundle_manifest import BundleManifest, parse_version
from skinspector.core.errors import ModelFileError
from skinspector.core.storage import fsync_dir, write_atomic
from updates.errors import (
    IncompatibleBundleError,
    SlotError,
    SmokeTestError,
)
from updates.integrity import unpack_archive

__all__ = [
    "POINTER_NAME",
    "SLOTS",
    "Installed",
    "SlotState",
    "SlotStore",
    "check_compatible",
]

POINTER_NAME = "active.json"
SERVING_NAME = "serving.json"
SLOTS = ("slot-a", "slot-b")

SmokeTest = Callable[[Path], object]
StepHook = Callable[[str], None]


def _no_hook(step: str) -> None:
    del step


def check_compatible(manifest_min: str | None, server_version: str = __version__) -> None:
    """Refuse a bundle that needs a newer server."""
    if manifest_min is None:
        return
    needed, ours = parse_version(manifest_min), parse_version(server_version)
    if needed is not None and ours is not None and needed > ours:
        raise IncompatibleBundleError(
            f"the bundle needs server {manifest_min} or newer; this box runs {server_version}: "
            "update the SKINspectoR software first"
        )


@dataclass(frozen=True, slots=True)
class SlotState:
    """What ``active.json`` says."""

    active: str | None = None
    previous: str | None = None
    held_back: tuple[str, ...] = ()  # versions rolled back from: not reinstalled
    switched_at: str | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> SlotState:
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("bundle"), str):
            raise SlotError(f"{POINTER_NAME} names no bundle")
        previous = raw.get("previous")
        held = raw.get("held_back", [])
        return cls(
            active=_check_name(raw["bundle"]),
            previous=_check_name(previous) if isinstance(previous, str) else None,
            held_back=tuple(v for v in held if isinstance(v, str)),
            switched_at=raw["switched_at"] if isinstance(raw.get("switched_at"), str) else None,
        )

    def to_bytes(self, versions: dict[str, str | None]) -> bytes:
        body: dict[str, Any] = {
            "bundle": self.active,
            "version": versions.get("active"),
            "previous": self.previous,
            "previous_version": versions.get("previous"),
            "held_back": list(self.held_back),
            "switched_at": self.switched_at,
        }
        return json.dumps(body, indent=2).encode()


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise SlotError(f"{POINTER_NAME} names an invalid bundle folder: {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Installed:
    slot: str
    version: str
    previous: str | None
    previous_version: str | None


class SlotStore:
    """The bundles folder of one data directory."""

    def __init__(self, bundles_dir: Path) -> None:
        self.root = bundles_dir

    @property
    def pointer(self) -> Path:
        return self.root / POINTER_NAME

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    # ------------------------------------------------------------------ reading

    def state(self) -> SlotState:
        try:
            data = self.pointer.read_bytes()
        except FileNotFoundError:
            return SlotState()
        try:
            return SlotState.from_bytes(data)
        except ValueError as exc:
            raise SlotError(f"{self.pointer} is damaged: {exc}") from exc

    def manifest(self, name: str | None) -> BundleManifest | None:
        """The manifest of bundle folder ``name``, or None if absent or unreadable."""
        if name is None:
            return None
        try:
            return BundleManifest.read(self.root / name)
        except ModelFileError:
            return None

    def version(self, name: str | None) -> str | None:
        manifest = self.manifest(name)
        return manifest.version if manifest else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One update or rollback at a time (across processes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise SlotError("another update or rollback is running") from exc
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ writing

    def _write_pointer(self, state: SlotState) -> None:
        versions = {"active": self.version(state.active), "previous": self.version(state.previous)}
        write_atomic(self.pointer, state.to_bytes(versions))

    def install(
        self,
        archive: Path,
        *,
        smoke: SmokeTest,
        hook: StepHook = _no_hook,
        server_version: str = __version__,
        progress: bool = False,
    ) -> Installed:
        """Unpack, verify, install into the inactive slot, smoke-test, switch (see module
        docstring). The caller holds :meth:`lock`."""
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        new = self.staging / "new"
        try:
            return self._install(archive, new, smoke, hook, server_version, progress)
        finally:
            # Refused or installed, nothing stays in staging (a crash leaves it to the
            # next update, which wipes it first).
            shutil.rmtree(self.staging, ignore_errors=True)

    def _install(
        self,
        archive: Path,
        new: Path,
        smoke: SmokeTest,
        hook: StepHook,
        server_version: str,
        progress: bool,
    ) -> Installed:
        manifest = unpack_archive(archive, new, progress=progress)
        fsync_dir(self.staging)
        hook("unpacked")
        check_compatible(manifest.min_server_version, server_version)
        state = self.state()
        serving, failed = self.serving()
        if state.previous is not None and (serving, failed) == (state.previous, state.active):
            # The server fell back to the previous slot (the active one failed to load):
            # make that official before touching anything, so the broken slot is the one
            # replaced and a crash can only leave the working bundle active.
            state = SlotState(state.previous, state.active, state.held_back, state.switched_at)
            self._write_pointer(state)
            hook("fallback-adopted")
        target = SLOTS[1] if state.active == SLOTS[0] else SLOTS[0]
        keep = state.active
        if state.previous == target:
            state = SlotState(state.active, None, state.held_back, state.switched_at)
            self._write_pointer(state)
            hook("previous-released")
        shutil.rmtree(self.root / target, ignore_errors=True)
        fsync_dir(self.root)
        hook("slot-cleared")
        os.replace(new, self.root / target)
        fsync_dir(self.root)
        hook("installed")
        try:
            smoke(self.root / target)
        except Exception as exc:
            shutil.rmtree(self.root / target, ignore_errors=True)
            fsync_dir(self.root)
            if isinstance(exc, SmokeTestError):
                raise
            raise SmokeTestError(
                f"bundle {manifest.version} failed its smoke test: {type(exc).__name__}: {exc}"
            ) from exc
        hook("smoke-tested")
        previous_version = self.version(keep)
        switched = SlotState(
            active=target,
            previous=keep,
            held_back=tuple(v for v in state.held_back if v != manifest.version),
            switched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._write_pointer(switched)
        hook("switched")
        return Installed(target, manifest.version, keep, previous_version)

    def serving(self) -> tuple[str | None, str | None]:
        """(slot the server runs, slot it fell back from) per ``serving.json``."""
        try:
            raw = json.loads((self.root / SERVING_NAME).read_bytes())
        except (OSError, ValueError):
            return None, None
        if not isinstance(raw, dict):
            return None, None
        slot, failed = raw.get("slot"), raw.get("fallback_from")
        return (
            slot if isinstance(slot, str) else None,
            failed if isinstance(failed, str) else None,
        )

    def mark_serving(
        self, slot: str | None, version: str | None, fallback_from: str | None = None
    ) -> None:
        """Called by the server whenever it starts serving a bundle folder; with
        ``fallback_from`` when the active slot failed to load."""
        if not self.root.is_dir():
            return
        body = {"slot": slot, "version": version, "fallback_from": fallback_from}
        write_atomic(self.root / SERVING_NAME, json.dumps(body).encode())

    def rollback(self) -> SlotState:
        """Make the previous bundle active again; the one left is held back (not
        reinstalled by updates) and stays as the previous slot."""
        state = self.state()
        if state.previous is None or self.manifest(state.previous) is None:
            raise SlotError("there is no previous bundle to go back to")
        left = self.version(state.active)
        held = state.held_back + ((left,) if left and left not in state.held_back else ())
        new = SlotState(
            active=state.previous,
            previous=state.active,
            held_back=held,
            switched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._write_pointer(new)
        return new

    def status(self) -> dict[str, Any]:
        state = self.state()
        slots: dict[str, Any] = {}
        names = sorted({*SLOTS, *(n for n in (state.active, state.previous) if n)})
        for name in names:
            folder = self.root / name
            if not folder.exists():
                continue
            manifest = self.manifest(name)
            role = (
                "active"
                if name == state.active
                else "previous"
                if name == state.previous
                else "unused"
            )
            slots[name] = {
                "role": role,
                "version": manifest.version if manifest else None,
                "model_id": manifest.model_id if manifest else None,
                "intended_use": manifest.intended_use if manifest else None,
                "valid": manifest is not None,
            }
        return {
            "active": state.active,
            "active_version": self.version(state.active),
            "previous": state.previous,
            "previous_version": self.version(state.previous),
            "held_back": list(state.held_back),
            "switched_at": state.switched_at,
            "slots": slots,
        }
