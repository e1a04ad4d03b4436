"""Receiving an envelope upload without trusting its sender first.

Order of work for ``POST /api/v1/envelopes`` (nothing big is read before step 3):

1. a declared ``Content-Length`` over the cap -> 413; too many uploads in flight -> 503
   with ``Retry-After`` (:class:`UploadGate`);
2. the sender: signed request headers when present (required with
   ``require_signed_uploads``), and the sender id in the envelope's first 24 bytes; an
   unknown or revoked clinic, or headers naming another clinic -> 403;
3. the rest of the body is streamed to a 0600 file under ``<data_dir>/incoming`` with the
   cap enforced chunk by chunk (413 as soon as it is passed), and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from skinspector.core.http_api import ApiError

__all__ = ["UploadGate", "spool_body", "too_large"]

_CHUNK = 256 * 1024


class UploadGate:
    """At most ``limit`` envelope uploads in flight; one more is answered 503."""

    def __init__(self, limit: int, retry_after_seconds: int) -> None:
        self.limit, self.retry_after = limit, retry_after_seconds
        self.active = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self.active >= self.limit:
            raise ApiError(
                503,
                "busy",
                "the hub is receiving too many envelopes; retry later",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


def too_large(cap: int) -> ApiError:
    return ApiError(
        413, "envelope_too_large", f"the envelope is larger than the hub's {cap}-byte cap"
    )


def _open_spool(folder: Path) -> tuple[Path, int]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"upload-{secrets.token_hex(8)}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return path, fd


async def spool_body(request: web.Request, prefix: bytes, cap: int, folder: Path) -> Path:
    """Write ``prefix`` and the rest of the body to a new 0600 file under ``folder``;
    413 (file removed) as soon as the total passes ``cap``. The caller removes the file."""
    path, fd = _open_spool(folder)
    try:
        size = len(prefix)
        os.write(fd, prefix)
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise too_large(cap)
            os.write(fd, chunk)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path
