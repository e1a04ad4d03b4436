"""Where updates come from: the hub over HTTP(S), or a directory (USB stick, share).

Both go through TUF's ``FetcherInterface``, so a USB stick gets exactly the verification
the network gets. :class:`DirectoryFetcher` serves ``file://`` URLs from one directory and
answers 404 for anything missing or outside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from skinspector import __version__
from updates.errors import UpdateSourceError

__all__ = ["DirectoryFetcher", "UpdateSource"]

_CHUNK = 1024 * 1024


class DirectoryFetcher(FetcherInterface):
    """``file://`` URLs under ``root``; nothing outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _fetch(self, url: str) -> Iterator[bytes]:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise DownloadError(f"not a file URL: {url}")
        path = Path(unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.root):
            raise DownloadHTTPError(f"{url} is outside the update directory", 403)
        if not path.is_file():
            raise DownloadHTTPError(f"{url} not found", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk


@dataclass(frozen=True, slots=True)
class UpdateSource:
    """A repository: its metadata and targets base URLs and the fetcher that reads them."""

    description: str
    metadata_url: str
    targets_url: str
    online: bool
    fetcher: FetcherInterface

    @classmethod
    def parse(cls, text: str, *, timeout_seconds: int = 60) -> UpdateSource:
        """``https://hub/updates/`` (the hub serves the repository under /updates/) or a
        directory holding ``metadata/`` and ``targets/``."""
        if text.startswith(("http://", "https://")):
            base = text if text.endswith("/") else f"{text}/"
            return cls(
                description=base,
                metadata_url=f"{base}metadata/",
                targets_url=f"{base}targets/",
                online=True,
                fetcher=Urllib3Fetcher(
                    socket_timeout=timeout_seconds, app_user_agent=f"skinspector/{__version__}"
                ),
            )
        root = Path(text).expanduser()
        if not (root / "metadata").is_dir():
            raise UpdateSourceError(
                f"{root} is not an update repository (no metadata/ folder); pass the "
                "folder `skinspector bundle publish --repo` wrote, or the hub's URL"
            )
        root = root.resolve()
        base = "file://" + quote(root.as_posix())
        return cls(
            description=str(root),
            metadata_url=f"{base}/metadata/",
            targets_url=f"{base}/targets/",
            online=False,
            fetcher=DirectoryFetcher(root),
        )
