"""Pairing links and their QR renderings (SVG for the web page, text for the CLI)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest

from edge_server.qr import pairing_url, qr_svg, qr_terminal

BASE = "http://192.168.1.20:8080"


def test_pairing_url_puts_the_code_in_the_fragment() -> None:
    url = pairing_url(BASE, "01234567")
    assert url == "http://192.168.1.20:8080/app/#pair=01234567"
    parts = urlsplit(url)
    assert parts.path == "/app/"
    assert parts.query == ""
    assert parts.fragment == "pair=01234567"
    # What a browser sends to the server (everything before '#') holds no code.
    assert "01234567" not in url.split("#", 1)[0]


@pytest.mark.parametrize(
    "base",
    ["http://192.168.1.20:8080/", "https://skinspector.local", "http://[fe80::1]:8080/box"],
)
def test_pairing_url_bases(base: str) -> None:
    url = pairing_url(base, "12345678")
    assert url.startswith(base.rstrip("/") + "/app/#pair=")
    assert "//app" not in url
    assert urlsplit(url).fragment == "pair=12345678"


@pytest.mark.parametrize(
    "base",
    ["", "192.168.1.20:8080", "ftp://box", "http://", "http://box/?x=1", "http://box/#a"],
)
def test_pairing_url_rejects_bad_bases(base: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        pairing_url(base, "12345678")


def test_pairing_url_rejects_empty_code() -> None:
    with pytest.raises(ValueError, match="code"):
        pairing_url(BASE, "")


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def test_qr_svg_is_an_svg_element() -> None:
    url = pairing_url(BASE, "01234567")
    svg = qr_svg(url)
    assert svg.startswith("<svg")
    assert not svg.startswith("<?xml")  # inline: embeddable in HTML as is
    root = ET.fromstring(svg)
    assert _local_name(root.tag) == "svg"
    assert int(root.attrib["width"]) == int(root.attrib["height"]) > 0
    assert any(_local_name(child.tag) == "path" for child in root)
    # Larger modules give a larger image of the same code.
    assert int(ET.fromstring(qr_svg(url, scale=8)).attrib["width"]) == 2 * int(root.attrib["width"])


def test_qr_svg_differs_per_code() -> None:
    assert qr_svg(pairing_url(BASE, "01234567")) != qr_svg(pairing_url(BASE, "76543210"))


def test_qr_terminal_is_multiline_text() -> None:
    text = qr_terminal(pairing_url(BASE, "01234567"))
    lines = text.splitlines()
    # Version >= 2 QR code (25+ modules) plus a 4-module quiet zone on each side.
    assert len(lines) >= 25 + 8
    assert all(line.strip() for line in lines)
    assert "\033[" in text  # ANSI colour blocks


def test_qr_terminal_compact_uses_half_blocks() -> None:
    full = qr_terminal(pairing_url(BASE, "01234567"))
    compact = qr_terminal(pairing_url(BASE, "01234567"), compact=True)
    lines = compact.splitlines()
    assert len(lines) > 10
    assert len(lines) == (len(full.splitlines()) + 1) // 2
    assert "\033[" not in compact
    assert set(compact) <= {" ", "\n", "\u2580", "\u2584", "\u2588"}
