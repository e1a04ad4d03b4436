"""Encrypted backups of a box's data to an offline recovery key.

At install the operator makes a recovery key pair (X25519). The private key is shown once
and kept offline (paper, a USB stick in the clinic safe); only the public key stays on the
box (``<data-dir>/recovery.pub``). A backup is a tar stream of the data directory (SQLite
files copied with SQLite's online backup API, so a running server is fine) encrypted on
the fly; no plaintext copy of the archive is ever written.

File format (all integers big-endian)::

    offset  size  field
    0       8     magic b"SKBKUP01"
    8       32    ephemeral X25519 public key
    40      16    random salt
    56      ...   chunks: u32 ciphertext length, then AES-256-GCM ciphertext + 16-byte tag

    key   = HKDF-SHA256(X25519(eph, recipient), salt, info=INFO || eph_pub || recipient_pub)
    nonce = 11-byte chunk counter || 1 byte (1 on the last chunk, else 0)
    aad   = the 56-byte header

The last-chunk flag in the nonce makes a truncated file fail to decrypt; the counter makes
reordered chunks fail; the header in the AAD binds every chunk to this file's key.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from skinspector.core.errors import InputError, SkinspectorError
from skinspector.core.storage import fsync_dir, make_private_dir, write_atomic

__all__ = [
    "PUBLIC_KEY_FILE",
    "BackupError",
    "RecoveryKey",
    "create_backup",
    "load_public_key",
    "restore_backup",
    "save_public_key",
]

MAGIC = b"SKBKUP01"
INFO = b"skinspector-box-backup/v1"
CHUNK = 1 << 20
_HEADER_LEN = len(MAGIC) + 32 + 16
_PRIVATE_PREFIX = "SKRK1-"
_PUBLIC_PREFIX = "SKRP1-"
PUBLIC_KEY_FILE = "recovery.pub"
#: Not backed up: bundles are signed downloads (reinstall with ``skinspector update``),
#: the staging folder of backups, and the running server's record.
#: ``.cache`` holds built artefacts (the service's HOME is the data directory).
_SKIPPED_TOP = ("bundles", "backup", "server.json", "tmp", ".cache")
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")

Progress = Callable[[str], None]


class BackupError(SkinspectorError):
    """The backup cannot be written or read (wrong key, damaged or truncated file)."""


class RecoveryKey:
    """An X25519 key pair; ``secret_text`` is what the operator keeps offline."""

    def __init__(self, private: x25519.X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> RecoveryKey:
        return cls(x25519.X25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> RecoveryKey:
        raw = _decode(text.strip(), _PRIVATE_PREFIX)
        return cls(x25519.X25519PrivateKey.from_private_bytes(raw))

    @property
    def secret_text(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _encode(raw, _PRIVATE_PREFIX)

    @property
    def public_text(self) -> str:
        return _encode(_raw_public(self._private.public_key()), _PUBLIC_PREFIX)

    @property
    def private_key(self) -> x25519.X25519PrivateKey:
        return self._private

    def __repr__(self) -> str:
        return f"RecoveryKey(public={self.public_text})"


def _raw_public(key: x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _encode(raw: bytes, prefix: str) -> str:
    body = base64.b32encode(raw).decode().rstrip("=")
    # Groups of 4 characters: easier to copy from paper or read over the phone.
    return prefix + "-".join(body[i : i + 4] for i in range(0, len(body), 4))


def _decode(text: str, prefix: str) -> bytes:
    if not text.upper().startswith(prefix):
        raise InputError(f"not a recovery key (it starts with {prefix})")
    body = text[len(prefix) :].replace("-", "").replace(" ", "").upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise InputError("the recovery key has a typo (not base32)") from exc
    if len(raw) != 32:
        raise InputError("the recovery key has a typo (wrong length)")
    return raw


def save_public_key(data_dir: Path, key: RecoveryKey) -> Path:
    path = data_dir / PUBLIC_KEY_FILE
    write_atomic(path, (key.public_text + "\n").encode(), mode=0o600)
    return path


def load_public_key(data_dir: Path) -> x25519.X25519PublicKey:
    path = data_dir / PUBLIC_KEY_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise BackupError(
            f"{path} is missing: run 'skinspector box recovery-key init' first"
        ) from None
    return x25519.X25519PublicKey.from_public_bytes(_decode(text, _PUBLIC_PREFIX))


def _derive(shared: bytes, salt: bytes, eph: bytes, recipient: bytes) -> AESGCM:
    key = HKDF(hashes.SHA256(), 32, salt, INFO + eph + recipient).derive(shared)
    return AESGCM(key)


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class _EncryptingWriter(io.RawIOBase):
    """A write-only stream: buffers ``CHUNK`` bytes, seals each as one chunk."""

    def __init__(self, out: IO[bytes], recipient: x25519.X25519PublicKey) -> None:
        super().__init__()
        eph = x25519.X25519PrivateKey.generate()
        eph_pub, rec_pub = _raw_public(eph.public_key()), _raw_public(recipient)
        salt = os.urandom(16)
        self._header = MAGIC + eph_pub + salt
        self._aead = _derive(eph.exchange(recipient), salt, eph_pub, rec_pub)
        self._out = out
        self._buffer = bytearray()
        self._counter = 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) > CHUNK:  # keep >0 bytes back: the last chunk is flagged
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def _seal(self, plain: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, last), plain, self._header)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._counter += 1

    def finish(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()


def _decrypted_chunks(source: IO[bytes], key: RecoveryKey) -> Iterator[bytes]:
    header = source.read(_HEADER_LEN)
    if len(header) != _HEADER_LEN or not header.startswith(MAGIC):
        raise BackupError("not a SKINspectoR backup file")
    eph_pub = header[len(MAGIC) : len(MAGIC) + 32]
    salt = header[len(MAGIC) + 32 :]
    own_pub = _raw_public(key.private_key.public_key())
    shared = key.private_key.exchange(x25519.X25519PublicKey.from_public_bytes(eph_pub))
    aead = _derive(shared, salt, eph_pub, own_pub)
    counter = 0
    while True:
        raw_len = source.read(4)
        if len(raw_len) != 4:
            raise BackupError("the backup file is truncated")
        (length,) = struct.unpack(">I", raw_len)
        if length < 16 or length > CHUNK + 16:
            raise BackupError("the backup file is damaged (bad chunk length)")
        sealed = source.read(length)
        if len(sealed) != length:
            raise BackupError("the backup file is truncated")
        for last in (False, True):
            try:
                plain = aead.decrypt(_nonce(counter, last), sealed, header)
            except InvalidTag:
                continue
            break
        else:
            if counter == 0:
                raise BackupError("wrong recovery key, or the backup file is damaged")
            raise BackupError("the backup file is damaged")
        yield plain
        counter += 1
        if last:
            if source.read(1):
                raise BackupError("the backup file has data after its last chunk")
            return


class _DecryptingReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live database (SQLite's online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _members(data_dir: Path) -> Iterator[tuple[Path, str]]:
    for folder, dirs, files in os.walk(data_dir):
        rel_folder = Path(folder).relative_to(data_dir)
        if rel_folder == Path("."):
            dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_TOP)
        else:
            dirs.sort()
        for name in sorted(files):
            rel = rel_folder / name
            if str(rel) in _SKIPPED_TOP or name.endswith(".tmp"):
                continue
            if name.endswith(_SQLITE_SIDECARS):
                continue
            yield data_dir / rel, rel.as_posix()


def create_backup(
    data_dir: Path,
    out_dir: Path,
    *,
    extra_files: dict[str, Path] | None = None,
    progress: Progress | None = None,
    now: float | None = None,
) -> Path:
    """Write ``out_dir/skinspector-backup-<time>.skbk`` encrypted to the box's recovery key.

    ``extra_files`` (archive name -> path) adds files from outside the data directory,
    e.g. the settings file as ``config/settings.toml``.
    """
    import time

    recipient = load_public_key(data_dir)
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a data directory")
    if out_dir.resolve().is_relative_to(data_dir.resolve()):
        raise InputError("write backups outside the data directory (e.g. to a USB stick)")
    make_private_dir(out_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = out_dir / f"skinspector-backup-{stamp}.skbk"
    partial = out_dir / f".{target.name}.partial"
    staging = data_dir / "backup"
    make_private_dir(staging)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            writer = _EncryptingWriter(out, recipient)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path, name in _members(data_dir):
                    if progress is not None:
                        progress(name)
                    if _is_sqlite(path):
                        with tempfile.TemporaryDirectory(dir=staging) as tmp:
                            copy = Path(tmp) / "copy.sqlite3"
                            _sqlite_copy(path, copy)
                            tar.add(copy, arcname=f"data/{name}")
                    else:
                        tar.add(path, arcname=f"data/{name}", recursive=False)
                for name, path in (extra_files or {}).items():
                    tar.add(path, arcname=f"extra/{name}", recursive=False)
            writer.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        fsync_dir(out_dir)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def restore_backup(
    archive: Path,
    key: RecoveryKey,
    data_dir: Path,
    *,
    progress: Progress | None = None,
) -> list[str]:
    """Decrypt ``archive`` into a new, empty ``data_dir``; returns the restored names.

    Everything is extracted into a hidden sibling folder first and moved into place only
    after the whole file decrypted, so a wrong key or a damaged file leaves nothing behind.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise InputError(f"{data_dir} is not empty: restore into a new data directory")
    parent = data_dir.resolve().parent
    make_private_dir(parent)
    work = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=parent))
    restored: list[str] = []
    try:
        with archive.open("rb") as source:
            reader = io.BufferedReader(_DecryptingReader(_decrypted_chunks(source, key)))
            try:
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    for member in tar:
                        if not member.name.startswith(("data/", "extra/")):
                            raise BackupError(f"unexpected entry in the backup: {member.name}")
                        if progress is not None:
                            progress(member.name)
                        tar.extract(member, work, filter="data")
                        restored.append(member.name)
            except tarfile.TarError as exc:
                raise BackupError(f"the backup file is damaged ({exc})") from exc
        for folder, _dirs, files in os.walk(work):
            os.chmod(folder, 0o700)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o600)
        if data_dir.exists():
            data_dir.rmdir()
        make_private_dir(work / "data")  # an empty box has no entries under data/
        os.replace(work / "data", data_dir)
        extra = work / "extra"
        if extra.is_dir():
            os.replace(extra, data_dir / "restored-extra")
        fsync_dir(parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return restored
