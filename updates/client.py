"""The clinic side of TUF: provisioning the trusted root, refreshing metadata, finding the
newest bundle and downloading it into staging.

State lives in ``<data-dir>/updates/``::

    metadata/root.json, root_history/N.root.json   trusted root (``update --init-root``)
    metadata/timestamp.json snapshot.json targets.json   newest verified metadata
    trusted-time.json                              the clock floor (see ``clock``)

Trust bootstrap: the clinic trusts exactly the root metadata it was provisioned with
(``skinspector update --init-root root.json``, done when the box is set up, with the root
file from the maintainers, whose SHA-256 fingerprint is checked out of band). Later roots
are accepted only through TUF's chain: each signed by a threshold of the previous root's
keys and of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported, documented API
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.updater import Updater

from updates.clock import TrustedTime, check_expiry, parse_issued
from updates.errors import (
    DownloadIntegrityError,
    ExpiredMetadataError,
    MetadataMismatchError,
    NotProvisionedError,
    RollbackError,
    SignatureError,
    UntrustedMetadataError,
    UpdateError,
    UpdateSourceError,
)
from updates.fetcher import UpdateSource
from updates.repository import ISSUED_FIELD, LATEST_TARGET

__all__ = ["AvailableBundle", "RootInfo", "UpdateClient", "translate_tuf_error"]

MAX_LATEST_BYTES = 64 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RootInfo:
    version: int
    fingerprint: str  # SHA-256 of the root metadata file the box was provisioned with
    threshold: int
    keyids: tuple[str, ...]
    expires: datetime


@dataclass(frozen=True, slots=True)
class AvailableBundle:
    version: str
    min_server_version: str | None
    intended_use: str | None
    target: TargetFile


def translate_tuf_error(exc: Exception) -> UpdateError:
    """python-tuf's errors as ours (the original stays as ``__cause__``)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return SignatureError(f"metadata is not signed by enough trusted keys: {text}")
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return RollbackError(f"metadata is older than what this box trusts (rollback): {text}")
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return ExpiredMetadataError(
            f"{text} (freeze or stale copy; if this box's clock is wrong, set it and retry)"
        )
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return MetadataMismatchError(f"metadata does not match what signed it: {text}")
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return MetadataMismatchError(
            "a metadata file is longer than the length its signed metadata records, so it "
            f"is not the file that was signed (tampered or mixed-up metadata): {text}"
        )
    if isinstance(exc, tuf_errors.RepositoryError):
        return UntrustedMetadataError(f"metadata refused: {text}")
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return UpdateSourceError(f"the repository answered HTTP {exc.status_code}: {text}")
    if isinstance(exc, tuf_errors.DownloadError):
        cause = exc.__cause__
        detail = f"{text}: {type(cause).__name__}" if cause is not None else text
        return UpdateSourceError(f"the repository cannot be read: {detail}")
    return UpdateSourceError(f"the update failed: {type(exc).__name__}: {text}")


class UpdateClient:
    """One clinic's TUF state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = _utcnow,
        online_max_age: timedelta = timedelta(days=14),
        max_bundle_bytes: int = 64 * 1024**3,
    ) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.online_max_age = online_max_age
        self.max_bundle_bytes = max_bundle_bytes

    @property
    def metadata_dir(self) -> Path:
        return self.state_dir / "metadata"

    @property
    def time_file(self) -> Path:
        return self.state_dir / "trusted-time.json"

    @property
    def provisioned(self) -> bool:
        return (self.metadata_dir / "root.json").exists()

    # ------------------------------------------------------------------ bootstrap

    def provision(self, root_bytes: bytes) -> RootInfo:
        """Trust ``root_bytes`` (a root metadata file signed by a threshold of its own keys)
        from now on. Refuses to replace a different trusted root."""
        try:
            md = Metadata[Root].from_bytes(root_bytes)
            md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        except (tuf_errors.RepositoryError, ValueError, KeyError) as exc:
            raise SignatureError(f"not a valid self-signed root metadata file: {exc}") from exc
        if self.provisioned:
            current = self.trusted_root()
            if current.version >= md.signed.version and self._root_file_bytes(
                md.signed.version
            ) == bytes(root_bytes):
                return current
            raise UpdateError(
                f"this box already trusts root v{current.version} "
                f"({current.fingerprint[:16]}...); newer roots arrive through the repository. "
                f"To start over, remove {self.metadata_dir}"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.metadata_dir.mkdir(exist_ok=True)
        try:
            Updater(str(self.metadata_dir), "file:///nonexistent/", bootstrap=root_bytes)
        except tuf_errors.RepositoryError as exc:
            raise SignatureError(f"root metadata refused: {exc}") from exc
        return self.trusted_root()

    def _root_file_bytes(self, version: int) -> bytes | None:
        path = self.metadata_dir / "root_history" / f"{version}.root.json"
        return path.read_bytes() if path.is_file() else None

    def trusted_root(self) -> RootInfo:
        if not self.provisioned:
            raise NotProvisionedError(
                "this box has no trusted root yet: run `skinspector update --init-root "
                "root.json` with the root file from the maintainers"
            )
        data = (self.metadata_dir / "root.json").read_bytes()
        root = Metadata[Root].from_bytes(data).signed
        history = sorted(
            (self.metadata_dir / "root_history").glob("*.root.json"),
            key=lambda p: int(p.name.split(".", 1)[0]),
        )
        first = history[0].read_bytes() if history else data  # the provisioned root
        return RootInfo(
            version=root.version,
            fingerprint=hashlib.sha256(first).hexdigest(),
            threshold=root.roles["root"].threshold,
            keyids=tuple(root.roles["root"].keyids),
            expires=root.expires,
        )

    # ------------------------------------------------------------------ refresh

    def refresh(self, source: UpdateSource) -> Updater:
        """Load new root(s), timestamp, snapshot and targets; verify all of them."""
        if not self.provisioned:
            self.trusted_root()  # raises NotProvisionedError
        updater = Updater(
            str(self.metadata_dir),
            source.metadata_url,
            target_dir=None,
            target_base_url=source.targets_url,
            fetcher=source.fetcher,
            config=UpdaterConfig(app_user_agent="skinspector"),
            bootstrap=None,  # the provisioned root (and what it rotated to) is the anchor
        )
        try:
            updater.refresh()
        except Exception as exc:
            raise translate_tuf_error(exc) from exc
        self._check_times(source.online)
        return updater

    def _load(self, name: str, cls: type[Any]) -> Any:
        """A metadata file ngclient verified and stored (its signed part)."""
        md: Metadata[Any] = Metadata.from_bytes((self.metadata_dir / name).read_bytes())
        if not isinstance(md.signed, cls):
            raise UntrustedMetadataError(f"{name} is not {cls.type} metadata")
        return md.signed

    def _check_times(self, online: bool) -> None:
        """Expiry against the clock floor; online freshness; then advance the floor."""
        root: Root = self._load("root.json", Root)
        timestamp: Timestamp = self._load("timestamp.json", Timestamp)
        snapshot: Snapshot = self._load("snapshot.json", Snapshot)
        targets: Targets = self._load("targets.json", Targets)
        issued = parse_issued(timestamp.unrecognized_fields.get(ISSUED_FIELD))
        trusted = TrustedTime.load(self.time_file)
        now = self.clock()
        # ``issued`` is signed, so it is a true lower bound of the current time.
        advanced = trusted.advanced(issued)
        if advanced != trusted:
            advanced.save(self.time_file)
        check_expiry(
            {
                "root": root.expires,
                "timestamp": timestamp.expires,
                "snapshot": snapshot.expires,
                "targets": targets.expires,
            },
            issued,
            now=now,
            trusted=advanced,
            online_max_age=self.online_max_age if online else None,
        )

    # ------------------------------------------------------------------ targets

    def latest(self, updater: Updater, source: UpdateSource) -> AvailableBundle | None:
        """The newest published bundle, or None when nothing is published."""
        try:
            pointer = updater.get_targetinfo(LATEST_TARGET)
            if pointer is None:
                return None
            if pointer.length > MAX_LATEST_BYTES:
                raise DownloadIntegrityError(f"{LATEST_TARGET} is too large")
            data = self._fetch_verified(source, pointer, None)
            raw = json.loads(data)
            target_name = str(raw["target"])
            target = updater.get_targetinfo(target_name)
        except UpdateError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise UntrustedMetadataError(f"{LATEST_TARGET} is malformed: {exc}") from exc
        except Exception as exc:
            raise translate_tuf_error(exc) from exc
        if target is None:
            raise UntrustedMetadataError(
                f"{LATEST_TARGET} names {target_name}, which is not signed"
            )
        custom = (
            (target.custom or {}).get("skinspector", {}) if isinstance(target.custom, dict) else {}
        )
        version = custom.get("version")
        if not isinstance(version, str) or version != raw.get("version"):
            raise UntrustedMetadataError(
                f"{target_name} carries no version matching {LATEST_TARGET}"
            )
        return AvailableBundle(
            version=version,
            min_server_version=custom.get("min_server_version"),
            intended_use=custom.get("intended_use"),
            target=target,
        )

    def download(
        self, source: UpdateSource, bundle: AvailableBundle, dest: Path, *, progress: bool = False
    ) -> Path:
        """Stream the bundle archive to ``dest``: never more bytes than signed, then its
        length and SHA-256 against the signed target."""
        if bundle.target.length > self.max_bundle_bytes:
            raise DownloadIntegrityError(
                f"bundle {bundle.version} is {bundle.target.length} bytes, over this box's "
                f"limit of {self.max_bundle_bytes}"
            )
        free = shutil.disk_usage(dest.parent).free
        if free < bundle.target.length * 2:  # archive + unpacked copy
            raise UpdateSourceError(
                f"not enough disk space: bundle {bundle.version} needs "
                f"{2 * bundle.target.length} bytes free, {free} are"
            )
        self._fetch_verified(source, bundle.target, dest, progress=progress)
        return dest

    def _target_url(self, source: UpdateSource, target: TargetFile) -> str:
        root: Root = self._load("root.json", Root)
        path = target.get_prefixed_paths()[0] if root.consistent_snapshot else target.path
        return f"{source.targets_url}{path}"

    def _fetch_verified(
        self,
        source: UpdateSource,
        target: TargetFile,
        dest: Path | None,
        *,
        progress: bool = False,
    ) -> bytes:
        """Download ``target`` (into ``dest``, or into memory when None) and verify it."""
        url = self._target_url(source, target)
        received = 0
        buffer = bytearray()
        bar = tqdm(
            total=target.length,
            desc="downloading",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            file=sys.stderr,  # never on stdout: the result line (or --json) goes there
        )
        handle = dest.open("xb") if dest is not None else None
        try:
            try:
                for chunk in source.fetcher.fetch(url):
                    received += len(chunk)
                    if received > target.length:
                        raise DownloadIntegrityError(
                            f"{target.path}: the source sent more than the {target.length} "
                            "signed bytes (endless data); download stopped"
                        )
                    if handle is not None:
                        handle.write(chunk)
                    else:
                        buffer += chunk
                    bar.update(len(chunk))
            except tuf_errors.DownloadError as exc:
                raise translate_tuf_error(exc) from exc
            if handle is not None:
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            bar.close()
            if handle is not None:
                handle.close()
        try:
            if dest is not None:
                with dest.open("rb") as check:
                    target.verify_length_and_hashes(check)
            else:
                target.verify_length_and_hashes(bytes(buffer))
        except tuf_errors.LengthOrHashMismatchError as exc:
            raise DownloadIntegrityError(
                f"{target.path} does not match its signed length and SHA-256 (tampered or "
                f"truncated): {exc}"
            ) from exc
        return bytes(buffer)
