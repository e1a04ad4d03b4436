"""The maintainers' TUF repository: a directory of static files.

Layout (consistent snapshots: every version of every file has its own name, so the hub can
serve the directory while a publish writes into it, and a copy on a USB stick is
self-consistent)::

    metadata/1.root.json 2.root.json ...   every root version (clients walk the chain)
    metadata/root.json                     the newest root, for provisioning clinics
    metadata/N.targets.json                the bundles (signed by the targets key)
    metadata/N.snapshot.json               versions and hashes of targets metadata
    metadata/timestamp.json                the newest snapshot; written last
    targets/<sha256>.latest.json           which bundle is newest
    targets/bundles/<sha256>.skinspector-bundle-X.Y.Z.tar

A publish writes the bundle archive, then the new targets, snapshot and, last, timestamp
metadata, so a reader sees the old repository or the new one, never a mix.

Expiry (see :class:`ExpiryPolicy`): root 1 year, targets 26 weeks, snapshot and timestamp
6 weeks. Timestamp metadata also carries the time it was signed (``x-skinspector-issued``),
which clinics use to notice a clock that runs behind and to refuse stale metadata online.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported, documented API
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from skinspector.core.bundle_manifest import BundleManifest, parse_version
from skinspector.core.storage import fsync_dir, write_atomic
from updates.errors import BundleInputError, KeyStoreError
from updates.integrity import archive_manifest, pack_archive, verify_archive
from updates.keys import ROLES, KeyStore, NamedSigner

__all__ = [
    "BUNDLE_TARGET_DIR",
    "ISSUED_FIELD",
    "LATEST_TARGET",
    "ExpiryPolicy",
    "Published",
    "Repository",
    "bundle_target_name",
]

ISSUED_FIELD = "x-skinspector-issued"
LATEST_TARGET = "latest.json"
BUNDLE_TARGET_DIR = "bundles"
_CUSTOM = "skinspector"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """How long each role's metadata stays valid after it is signed.

    * timestamp and snapshot, **6 weeks**: a USB stick made from a freshly refreshed
      repository installs for six weeks, long enough for it to travel to a clinic that is
      offline for weeks. Online, clinics are stricter (``UpdateSettings.online_max_age``:
      timestamp signed at most 14 days ago), so run ``skinspector bundle refresh`` daily
      on the hub.
    * targets, **26 weeks**: re-signed by every publish (and ``refresh --targets``).
    * root, **1 year**: renewed by ``skinspector bundle keys rotate``.
    """

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(weeks=26)
    snapshot: timedelta = timedelta(weeks=6)
    timestamp: timedelta = timedelta(weeks=6)

    def for_role(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value


@dataclass(frozen=True, slots=True)
class Published:
    version: str
    target: str
    length: int
    sha256: str
    targets_version: int
    timestamp_version: int


def bundle_target_name(version: str) -> str:
    return f"{BUNDLE_TARGET_DIR}/skinspector-bundle-{version}.tar"


def _metadata_bytes(md: Metadata[Any]) -> bytes:
    return md.to_bytes()


class Repository:
    """Read and write one repository directory with the keys of a :class:`KeyStore`."""

    def __init__(
        self,
        path: Path,
        keys: KeyStore,
        policy: ExpiryPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.path = path
        self.keys = keys
        self.policy = policy or ExpiryPolicy()
        self.clock = clock

    @property
    def metadata_dir(self) -> Path:
        return self.path / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.path / "targets"

    # ------------------------------------------------------------------ reading

    def _read(self, name: str, cls: type[Signed]) -> Metadata[Any]:
        path = self.metadata_dir / name
        if not path.is_file():
            raise KeyStoreError(f"{self.path} is not a bundle repository ({name} missing)")
        md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
        if not isinstance(md.signed, cls):
            raise KeyStoreError(f"{path} is not {cls.type} metadata")
        return md

    def root(self) -> Metadata[Root]:
        return self._read("root.json", Root)

    def root_bytes(self) -> bytes:
        return (self.metadata_dir / "root.json").read_bytes()

    def timestamp(self) -> Metadata[Timestamp]:
        return self._read("timestamp.json", Timestamp)

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return self._read(f"{version}.snapshot.json", Snapshot)

    def targets(self) -> Metadata[Targets]:
        version = self.snapshot().signed.meta["targets.json"].version
        return self._read(f"{version}.targets.json", Targets)

    def published(self) -> list[tuple[str, TargetFile]]:
        """(version, target) of every bundle the targets metadata lists, oldest first."""
        found = []
        for name, info in self.targets().signed.targets.items():
            custom = info.unrecognized_fields.get("custom", {}).get(_CUSTOM, {})
            version = custom.get("version")
            if name.startswith(f"{BUNDLE_TARGET_DIR}/") and isinstance(version, str):
                found.append((version, info))
        return sorted(found, key=lambda item: parse_version(item[0]) or (0, 0, 0))

    # ------------------------------------------------------------------ signing

    def _sign(self, md: Metadata[Any], role: str, root: Root) -> None:
        """Sign with every key of ``role`` in the key store; refuse under the threshold."""
        spec = root.roles[role]
        signers = self.keys.signers_for(spec.keyids)
        if len(signers) < spec.threshold:
            raise KeyStoreError(
                f"signing {role} needs {spec.threshold} of its keys; {self.keys.path} holds "
                f"{len(signers)}"
            )
        md.signatures.clear()
        for named in signers:
            md.sign(named.signer, append=True)

    def _stamp(self, signed: Signed, role: str) -> None:
        signed.version += 1
        signed.expires = self.clock() + self.policy.for_role(role)

    def _new_state(self, root: Root, targets: Metadata[Targets] | None) -> list[tuple[Path, bytes]]:
        """Sign the next targets (if given), snapshot and timestamp; return the writes in
        the order they must happen (timestamp last)."""
        writes: list[tuple[Path, bytes]] = []
        if targets is not None:
            self._sign(targets, "targets", root)
            targets_bytes = _metadata_bytes(targets)
            targets_version = targets.signed.version
            writes.append((self.metadata_dir / f"{targets_version}.targets.json", targets_bytes))
        else:
            targets_version = self.snapshot().signed.meta["targets.json"].version
            targets_bytes = (self.metadata_dir / f"{targets_version}.targets.json").read_bytes()
        snapshot, timestamp = self.snapshot(), self.timestamp()
        self._stamp(snapshot.signed, "snapshot")
        self._stamp(timestamp.signed, "timestamp")
        writes += self._sign_freshness(root, targets_version, targets_bytes, snapshot, timestamp)
        return writes

    def _sign_freshness(
        self,
        root: Root,
        targets_version: int,
        targets_bytes: bytes,
        snapshot: Metadata[Snapshot],
        timestamp: Metadata[Timestamp],
    ) -> list[tuple[Path, bytes]]:
        """Point ``snapshot`` at the targets and ``timestamp`` at the snapshot (with its
        signing time), sign both; the two writes, timestamp last."""
        snapshot.signed.meta["targets.json"] = MetaFile.from_data(
            targets_version, targets_bytes, ["sha256"]
        )
        self._sign(snapshot, "snapshot", root)
        snapshot_bytes = _metadata_bytes(snapshot)
        timestamp.signed.snapshot_meta = MetaFile.from_data(
            snapshot.signed.version, snapshot_bytes, ["sha256"]
        )
        timestamp.signed.unrecognized_fields[ISSUED_FIELD] = self.clock().isoformat(
            timespec="seconds"
        )
        self._sign(timestamp, "timestamp", root)
        return [
            (self.metadata_dir / f"{snapshot.signed.version}.snapshot.json", snapshot_bytes),
            (self.metadata_dir / "timestamp.json", _metadata_bytes(timestamp)),
        ]

    @staticmethod
    def _apply(writes: list[tuple[Path, bytes]]) -> None:
        for path, data in writes:
            write_atomic(path, data)

    # ------------------------------------------------------------------ creating

    @classmethod
    def create(
        cls,
        path: Path,
        keys: KeyStore,
        *,
        root_threshold: int = 2,
        policy: ExpiryPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Repository:
        """A new repository: root v1 (signed by every root key), empty targets."""
        repo = cls(path, keys, policy, clock)
        if (repo.metadata_dir / "root.json").exists():
            raise KeyStoreError(f"{path} already holds a repository")
        named = {name: keys.load(name) for name in keys.names()}
        root_keys = [s for name, s in named.items() if name.startswith("root-")]
        missing = [role for role in ROLES[1:] if role not in named]
        if not root_keys or missing:
            raise KeyStoreError(f"{keys.path} lacks keys: run `skinspector bundle keys init`")
        if not 1 <= root_threshold <= len(root_keys):
            raise KeyStoreError(
                f"the root threshold must be 1..{len(root_keys)} (the root keys there are)"
            )
        now = clock()
        root = Root(expires=now + repo.policy.root, consistent_snapshot=True)
        for signer in root_keys:
            root.add_key(signer.signer.public_key, "root")
        root.roles["root"].threshold = root_threshold
        for role in ROLES[1:]:
            root.add_key(named[role].signer.public_key, role)
        root_md = Metadata(root)
        repo._sign(root_md, "root", root)
        root_bytes = _metadata_bytes(root_md)
        repo.metadata_dir.mkdir(parents=True, exist_ok=True)
        (repo.targets_dir / BUNDLE_TARGET_DIR).mkdir(parents=True, exist_ok=True)
        targets = Metadata(Targets(version=1, expires=now + repo.policy.targets))
        repo._sign(targets, "targets", root)
        targets_bytes = _metadata_bytes(targets)
        snapshot = Metadata(Snapshot(version=1, expires=now + repo.policy.snapshot))
        timestamp = Metadata(Timestamp(version=1, expires=now + repo.policy.timestamp))
        repo._apply(
            [
                (repo.metadata_dir / "1.root.json", root_bytes),
                (repo.metadata_dir / "root.json", root_bytes),
                (repo.metadata_dir / "1.targets.json", targets_bytes),
                *repo._sign_freshness(root, 1, targets_bytes, snapshot, timestamp),
            ]
        )
        return repo

    # ------------------------------------------------------------------ publishing

    def publish(self, bundle: Path, *, keep: int = 3, progress: bool = False) -> Published:
        """Add ``bundle`` (directory or .tar) as the newest target; re-sign targets,
        snapshot and timestamp. Keeps the newest ``keep`` bundles, deletes older ones."""
        if keep < 1:
            raise BundleInputError("--keep must be at least 1")
        root = self.root().signed
        work = self.path / f".publish-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            archive = work / "bundle.tar"
            if bundle.is_dir():
                pack_archive(bundle, archive, progress=progress)
            elif bundle.is_file():
                verify_archive(bundle, progress=progress)
                shutil.copyfile(bundle, archive)
            else:
                raise BundleInputError(f"bundle not found: {bundle}")
            manifest: BundleManifest = archive_manifest(archive)
            new_version = parse_version(manifest.version)
            if new_version is None:
                raise BundleInputError(f"bundle version {manifest.version!r} is not X.Y.Z")
            published = self.published()
            if published and (parse_version(published[-1][0]) or (0, 0, 0)) >= new_version:
                raise BundleInputError(
                    f"bundle {manifest.version} is not newer than the published "
                    f"{published[-1][0]}; build it with a higher --version"
                )
            name = bundle_target_name(manifest.version)
            info = TargetFile.from_file(name, str(archive), ["sha256"])
            custom = {
                "version": manifest.version,
                "min_server_version": manifest.min_server_version,
                "model_id": manifest.model_id,
                "intended_use": manifest.intended_use,
            }
            info.unrecognized_fields["custom"] = {_CUSTOM: custom}
            latest = json.dumps({"format": 1, "target": name, **custom}, indent=2).encode()
            latest_info = TargetFile.from_data(LATEST_TARGET, latest, ["sha256"])

            targets = self.targets()
            self._stamp(targets.signed, "targets")
            targets.signed.targets[name] = info
            targets.signed.targets[LATEST_TARGET] = latest_info
            dropped = [t for _, t in [*published, (manifest.version, info)][:-keep]]
            for old in dropped:
                del targets.signed.targets[old.path]
            writes = self._new_state(root, targets)  # signs everything before any write

            digest = info.hashes["sha256"]
            bundle_dir = self.targets_dir / BUNDLE_TARGET_DIR
            bundle_dir.mkdir(parents=True, exist_ok=True)
            os.replace(archive, bundle_dir / f"{digest}.{name.rsplit('/', 1)[1]}")
            fsync_dir(bundle_dir)
            write_atomic(
                self.targets_dir / f"{latest_info.hashes['sha256']}.{LATEST_TARGET}", latest
            )
            self._apply(writes)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for old in dropped:
            for path in old.get_prefixed_paths():
                (self.targets_dir / path).unlink(missing_ok=True)
        timestamp = self.timestamp().signed
        return Published(
            version=manifest.version,
            target=name,
            length=info.length,
            sha256=digest,
            targets_version=targets.signed.version,
            timestamp_version=timestamp.version,
        )

    def refresh(self, *, targets: bool = False) -> int:
        """Re-sign snapshot and timestamp (and targets with ``targets=True``) with fresh
        expiry; returns the new timestamp version. Needs only those roles' keys."""
        root = self.root().signed
        new_targets = None
        if targets:
            new_targets = self.targets()
            self._stamp(new_targets.signed, "targets")
        self._apply(self._new_state(root, new_targets))
        return self.timestamp().signed.version

    # ------------------------------------------------------------------ rotating keys

    def rotate(self, name: str) -> Root:
        """Replace the key ``name`` (root-N, targets, snapshot, timestamp) by a new key.

        Writes root version N+1, signed by a threshold of the old root keys and of the new
        ones, then re-signs targets, snapshot and timestamp, then moves the old key file to
        ``retired/``. Also renews root's expiry.
        """
        current_md = self.root()
        current = current_md.signed
        old = self.keys.load(name)
        roles = [r for r in ROLES if old.keyid in current.roles[r].keyids]
        if not roles:
            raise KeyStoreError(f"key {name} is not used by the repository's root")
        new = KeyStore.generate(name)
        root = Metadata[Root].from_bytes(current_md.to_bytes()).signed
        self._stamp(root, "root")
        for role in roles:
            root.revoke_key(old.keyid, role)
            root.add_key(new.signer.public_key, role)
        root_md = Metadata(root)
        signers = self._root_signers(current, root, new)
        for signer in signers:
            root_md.sign(signer.signer, append=True)
        try:
            current.verify_delegate("root", root_md.signed_bytes, root_md.signatures)
            root.verify_delegate("root", root_md.signed_bytes, root_md.signatures)
        except UnsignedMetadataError as exc:
            raise KeyStoreError(
                f"a new root needs {current.roles['root'].threshold} of the current root keys "
                f"in {self.keys.path}: {exc}"
            ) from exc
        root_bytes = _metadata_bytes(root_md)
        self.keys.install(new)  # the new key file exists before metadata names it
        write_atomic(self.metadata_dir / f"{root.version}.root.json", root_bytes)
        write_atomic(self.metadata_dir / "root.json", root_bytes)
        new_targets = self.targets()
        self._stamp(new_targets.signed, "targets")
        self._apply(self._new_state(root, new_targets))
        return root

    def _root_signers(self, current: Root, new_root: Root, new: NamedSigner) -> list[NamedSigner]:
        keyids = set(current.roles["root"].keyids) | set(new_root.roles["root"].keyids)
        signers = {s.keyid: s for s in self.keys.signers_for(keyids)}
        if new.keyid in new_root.roles["root"].keyids:
            signers[new.keyid] = new
        return list(signers.values())

    def status(self) -> dict[str, Any]:
        root, timestamp = self.root().signed, self.timestamp().signed
        return {
            "root_version": root.version,
            "root_expires": root.expires.isoformat(),
            "root_threshold": root.roles["root"].threshold,
            "root_keys": len(root.roles["root"].keyids),
            "timestamp_version": timestamp.version,
            "timestamp_expires": timestamp.expires.isoformat(),
            "targets_expires": self.targets().signed.expires.isoformat(),
            "bundles": [version for version, _ in self.published()],
        }
