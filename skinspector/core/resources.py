"""Files shipped inside the packages (the phone app, the starter knowledge base, the red-flag
rules, templates), found through :mod:`importlib.resources` so they load the same from a
checkout, an editable install or a wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["resource_dir", "resource_path"]


def resource_path(package: str, *parts: str) -> Path:
    """The file or folder ``parts`` inside ``package``, as a real filesystem path.

    The project is installed as plain files (never zipped), so the resource is a real path;
    anything else is a packaging error and says so.
    """
    found = resources.files(package).joinpath(*parts)
    if not isinstance(found, Path):
        raise RuntimeError(f"{package}/{'/'.join(parts)} is not a file on disk ({found!r})")
    return found


def resource_dir(package: str, *parts: str) -> Path:
    """Like :func:`resource_path`, for a folder that must exist."""
    found = resource_path(package, *parts)
    if not found.is_dir():
        raise RuntimeError(f"{package}/{'/'.join(parts)} is missing from the installation")
    return found
