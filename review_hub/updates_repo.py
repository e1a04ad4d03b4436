"""``GET /updates/...``: the hub serves the signed update repository as static files.

The repository directory (``HubSettings.updates_repo``, by default ``<data-dir>/updates``)
is what ``skinspector bundle publish --repo`` writes: ``metadata/`` and ``targets/``. The
hub adds no trust of its own: clinics verify everything with TUF against the root they
were provisioned with, so serving the files over plain HTTP is safe (TLS still hides which
bundle a clinic fetches). Only regular files inside the directory are served; no listings,
no symbolic links, no dot-files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

from aiohttp import web

from review_hub.state import SETTINGS
from skinspector.core.http_api import ApiError

__all__ = ["UPDATES_PREFIX", "routes"]

UPDATES_PREFIX = "/updates/"
routes = web.RouteTableDef()


def _resolve(root: Path, tail: str) -> Path | None:
    parts = PurePosixPath(tail).parts
    if not parts or any(p in ("..", ".") or p.startswith(".") or "\\" in p for p in parts):
        return None
    if parts[0] not in ("metadata", "targets"):
        return None
    path = root.joinpath(*parts)
    current = root
    for part in parts:  # refuse symbolic links anywhere on the way
        current = current / part
        if current.is_symlink():
            return None
    return path if path.is_file() else None


@routes.get(UPDATES_PREFIX + "{tail:.+}")
async def repository_file(request: web.Request) -> web.StreamResponse:
    root = request.app[SETTINGS].updates_repo
    path = await asyncio.to_thread(_resolve, root, request.match_info["tail"])
    if path is None:
        raise ApiError(404, "not_found", "no such file in the update repository")
    content_type = "application/json" if path.suffix == ".json" else "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": content_type})
