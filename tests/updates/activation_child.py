"""Child process of the kill-in-the-middle test: activate a bundle and SIGKILL itself at
the named step (``python tests/updates/activation_child.py DATA_DIR ARCHIVE STEP``)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from updates.slots import SlotStore


def main(data_dir: str, archive: str, step: str) -> None:
    def hook(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    slots = SlotStore(Path(data_dir) / "bundles")
    with slots.lock():
        slots.install(Path(archive), smoke=lambda bundle: None, hook=hook)


if __name__ == "__main__":
    main(*sys.argv[1:])
