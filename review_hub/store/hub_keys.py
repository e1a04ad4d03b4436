"""The hub's own key pair, kept in ``<data_dir>/hub-keys.json`` (mode 0600)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from sync_agent.errors import KeyFileError
from sync_agent.keys import PartyKeys, generate_keys

__all__ = ["load_or_create_hub_keys"]


def load_or_create_hub_keys(path: Path) -> PartyKeys:
    """The hub's own keys: loaded from ``path``, generated there on first use.

    Creation is race-free between processes: the new key file is written under a
    temporary name and hard-linked into place, which fails if another process was first;
    the loser then loads the winner's keys.
    """
    if path.exists():
        return PartyKeys.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    generate_keys().save(temporary)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise KeyFileError(f"cannot create the hub key file {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    return PartyKeys.load(path)
