"""QR codes that carry a pairing link from the box to a phone.

The link opens the phone app served by the box and carries the pairing code in the URL
fragment (``#pair=...``). Browsers never send the fragment to the server, so the code
stays out of access logs and proxies; the app reads it from ``location.hash``.
"""

from __future__ import annotations

import io
from urllib.parse import quote, urlsplit

import segno

__all__ = ["pairing_url", "qr_svg", "qr_terminal"]


def pairing_url(base_url: str, code: str) -> str:
    """``{base_url}/app/#pair={code}``: the phone app on the box, code in the fragment.

    ``base_url`` is the box's LAN address, e.g. ``http://192.168.1.20:8080``; a trailing
    slash is ignored. Raises ValueError for a URL that is not plain http(s) with a host,
    or that already has a query or fragment, and for an empty code.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or a fragment")
    if not code:
        raise ValueError("code must not be empty")
    return f"{base_url.rstrip('/')}/app/#pair={quote(code, safe='')}"


def _make(data: str) -> segno.QRCode:
    # Always a full QR code: segno would pick a Micro QR for short data, which many
    # phone camera apps cannot read. Level M survives a smudged screen or print-out.
    return segno.make_qr(data, error="m")


def qr_svg(data: str, *, scale: int = 4) -> str:
    """An inline ``<svg>`` element (no XML declaration) for embedding in an HTML page.

    ``scale`` is the size of one module in CSS pixels; the quiet zone is included.
    """
    return _make(data).svg_inline(scale=scale, title="Pairing QR code")


def qr_terminal(data: str, *, compact: bool = False) -> str:
    """The QR code as text for a terminal, one line per row (ANSI colours).

    ``compact=True`` uses Unicode half blocks instead (half the height, no colours;
    meant for a dark terminal background).
    """
    buffer = io.StringIO()
    _make(data).terminal(out=buffer, compact=compact)
    return buffer.getvalue()
