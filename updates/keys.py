"""Maintainer signing keys: one Ed25519 key per file, named after its role.

Layout of a key directory (mode 0700; every key file 0600, PKCS#8 PEM)::

    root-1.pem root-2.pem root-3.pem    root keys: root metadata needs a threshold (2 of 3)
    targets.pem                         signs the list of bundles (keep offline)
    snapshot.pem timestamp.pem          re-sign freshness; may live on the hub for a cron job
    retired/                            keys replaced by ``keys rotate`` (delete when done)

A key's public half and TUF key id are computed from the private key, so no other file is
needed. Keep the root keys apart (e.g. three USB sticks held by three people): any command
that signs root (``keys init``, ``keys rotate``) needs a threshold of them in the directory.
Loading a key file readable by group or others is refused.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # public API

from updates.errors import KeyStoreError

__all__ = ["KEY_SUFFIX", "ROLES", "KeyStore", "NamedSigner"]

KEY_SUFFIX = ".pem"
ROLES = ("root", "targets", "snapshot", "timestamp")


@dataclass(frozen=True, slots=True)
class NamedSigner:
    name: str  # file stem: root-1, targets, ...
    signer: CryptoSigner

    @property
    def keyid(self) -> str:
        return str(self.signer.public_key.keyid)


def _write_private(path: Path, signer: CryptoSigner) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.private_bytes)
        handle.flush()
        os.fsync(handle.fileno())


class KeyStore:
    """A directory of signing keys."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # ------------------------------------------------------------------ creating

    def create(self, root_keys: int = 3) -> list[NamedSigner]:
        """Generate root-1..N, targets, snapshot and timestamp keys (refuses to overwrite)."""
        if root_keys < 1:
            raise KeyStoreError("at least one root key is needed")
        names = [f"root-{i}" for i in range(1, root_keys + 1)] + list(ROLES[1:])
        if self.path.exists() and any(self.path.glob(f"*{KEY_SUFFIX}")):
            raise KeyStoreError(f"{self.path} already holds keys; choose an empty directory")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        created = []
        for name in names:
            signer = CryptoSigner.generate_ed25519()
            _write_private(self.path / f"{name}{KEY_SUFFIX}", signer)
            created.append(NamedSigner(name, signer))
        return created

    @staticmethod
    def generate(name: str) -> NamedSigner:
        return NamedSigner(name, CryptoSigner.generate_ed25519())

    def install(self, new: NamedSigner) -> None:
        """Put ``new`` in place of the key of the same name, moving the old one to retired/."""
        target = self.path / f"{new.name}{KEY_SUFFIX}"
        pending = self.path / f".{new.name}.new"
        _write_private(pending, new.signer)
        if target.exists():
            retired = self.path / "retired"
            retired.mkdir(exist_ok=True, mode=0o700)
            old = self.load(new.name)
            os.replace(target, retired / f"{new.name}-{old.keyid[:12]}{KEY_SUFFIX}")
        os.replace(pending, target)

    # ------------------------------------------------------------------ loading

    def names(self) -> list[str]:
        if not self.path.is_dir():
            raise KeyStoreError(f"key directory not found: {self.path}")
        return sorted(p.name[: -len(KEY_SUFFIX)] for p in self.path.glob(f"*{KEY_SUFFIX}"))

    def load(self, name: str) -> NamedSigner:
        path = self.path / f"{name}{KEY_SUFFIX}"
        if not path.is_file():
            raise KeyStoreError(f"key not found: {path}")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyStoreError(
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        try:
            private = load_pem_private_key(path.read_bytes(), None)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"{path} is not an unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyStoreError(f"{path} is not an Ed25519 key")
        return NamedSigner(name, CryptoSigner(private))

    def signers_for(self, keyids: list[str] | set[str]) -> list[NamedSigner]:
        """Every key in the directory whose key id is in ``keyids``."""
        wanted = set(keyids)
        found = []
        for name in self.names():
            loaded = self.load(name)
            if loaded.keyid in wanted:
                found.append(loaded)
        return found
