"""DNS-SD names of the clinic box: the service type, its host name and its instance name.

Names follow the DNS-SD rules: the host name is a single LDH label (letters, digits,
hyphens; at most 63 characters) under ``local.``; the instance name is free UTF-8 text
without control characters. When another responder already uses the instance name,
zeroconf renames ours to ``<instance>-2`` (``-3``, ...) unless the announcer was built with
``allow_name_change=False`` (see :mod:`edge_server.mdns.announcer`). zeroconf does not
probe host names: two boxes cloned with the same host name announce the same ``.local``
name, so clients should use the addresses that come with the service, not the host name.
"""

from __future__ import annotations

import hashlib
import re
import socket
import unicodedata

__all__ = [
    "MAX_INSTANCE_BYTES",
    "SERVICE_TYPE",
    "check_instance_name",
    "default_hostname",
    "default_instance_name",
    "local_hostname",
    "sanitize_dns_label",
]

#: The DNS-SD service type every SKINspectoR edge server announces.
SERVICE_TYPE = "_skinspector._tcp.local."

#: Instance names stay below the 63-byte DNS label limit so that zeroconf's conflict
#: suffix (``-2``, ``-3``, ...) still fits.
MAX_INSTANCE_BYTES = 56

_HOST_PREFIX = "skinspector"
_MAX_LABEL = 63
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def sanitize_dns_label(text: str, *, max_length: int = _MAX_LABEL) -> str:
    """Turn arbitrary text into a valid lower-case DNS label (RFC 1123 LDH rules).

    Accents are folded (``"Clínica"`` -> ``"clinica"``), every other character outside
    ``[a-z0-9]`` becomes a hyphen, runs of hyphens collapse, leading and trailing hyphens
    go, and the result is cut to ``max_length`` characters. Text with nothing usable left
    (e.g. only CJK characters) maps to ``host-<8 hex digits>``, a stable digest of the
    input, so that two such machines still get different names.
    """
    if not 1 <= max_length <= _MAX_LABEL:
        raise ValueError(f"max_length must be within 1..{_MAX_LABEL}, got {max_length}")
    folded = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(ch for ch in folded if not unicodedata.combining(ch))
    label = re.sub(r"[^a-z0-9]+", "-", ascii_only.lower()).strip("-")
    if not label:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        label = f"host-{digest[:8]}"
    return label[:max_length].rstrip("-")


def _short_host(raw: str | None) -> str:
    """The first label of ``raw`` (default: ``socket.gethostname()``)."""
    name = socket.gethostname() if raw is None else raw
    return name.strip().split(".", 1)[0]


def default_hostname(raw: str | None = None) -> str:
    """The ``.local.`` host name to announce, derived from the machine's host name.

    ``"Clinic_Box.lan"`` gives ``"skinspector-clinic-box.local."``; a name that already
    starts with ``skinspector`` is not prefixed twice. ``raw`` defaults to
    :func:`socket.gethostname`.
    """
    label = sanitize_dns_label(_short_host(raw))
    if label != _HOST_PREFIX and not label.startswith(f"{_HOST_PREFIX}-"):
        label = sanitize_dns_label(f"{_HOST_PREFIX}-{label}")
    return f"{label}.local."


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore").rstrip()


def default_instance_name(raw: str | None = None) -> str:
    """``"SKINspectoR on <short host name>"``, within the DNS-SD instance-name limits."""
    host = _CONTROL_RE.sub("", _short_host(raw)).strip()
    name = f"SKINspectoR on {host}" if host else "SKINspectoR"
    return _truncate_utf8(name, MAX_INSTANCE_BYTES)


def local_hostname(value: str) -> str:
    """``"box"``, ``"box.local"`` or ``"Box.local."`` as ``"box.local."``; ValueError unless
    the name is one valid DNS label under ``.local``."""
    label = value.strip().rstrip(".").lower().removesuffix(".local")
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(
            f"hostname {value!r} must be one DNS label under .local: letters, digits "
            "and inner hyphens, 1-63 characters"
        )
    return f"{label}.local."


def check_instance_name(value: str) -> str:
    """``value`` stripped; ValueError if empty, with control characters, or too long for a
    DNS label (:data:`MAX_INSTANCE_BYTES`)."""
    name = value.strip()
    if not name:
        raise ValueError("instance_name must not be empty")
    if _CONTROL_RE.search(name):
        raise ValueError("instance_name must not contain control characters")
    if len(name.encode("utf-8")) > MAX_INSTANCE_BYTES:
        raise ValueError(f"instance_name must be at most {MAX_INSTANCE_BYTES} UTF-8 bytes")
    return name
