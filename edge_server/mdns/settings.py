"""Settings of the box's mDNS announcement (``[server.mdns]`` in the config file)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_server.mdns.names import MAX_INSTANCE_BYTES, check_instance_name, local_hostname

__all__ = ["MdnsSettings"]


class MdnsSettings(BaseModel):
    """How (and whether) the edge server announces itself on the LAN."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Announce the server by mDNS/DNS-SD.")
    interfaces: list[str] = Field(
        default_factory=list,
        description=(
            "IP addresses of the interfaces to bind to and announce, e.g. ['192.168.1.20']. "
            "Empty: all interfaces, announcing every non-loopback IPv4 address "
            "(127.0.0.1 when there is none)."
        ),
    )
    hostname: str | None = Field(
        None,
        description=(
            "The .local host name the SRV record points at ('box', 'box.local' or "
            "'box.local.'; one DNS label). None: 'skinspector-<sanitised host name>.local.'."
        ),
    )
    instance_name: str | None = Field(
        None,
        description=(
            "Human-readable service instance name shown by browsers (UTF-8, at most "
            f"{MAX_INSTANCE_BYTES} bytes). None: 'SKINspectoR on <host name>'."
        ),
    )

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: list[str]) -> list[str]:
        """Each entry must be a unicast IP address; duplicates are dropped."""
        out: list[str] = []
        for entry in value:
            try:
                addr = ipaddress.ip_address(entry.strip())
            except ValueError as exc:
                raise ValueError(f"interface {entry!r} is not an IP address") from exc
            if addr.is_unspecified or addr.is_multicast:
                raise ValueError(f"interface {entry!r} must be a unicast address")
            if str(addr) not in out:
                out.append(str(addr))
        return out

    @field_validator("hostname")
    @classmethod
    def _check_hostname(cls, value: str | None) -> str | None:
        """Normalise to ``<label>.local.`` and require a valid LDH label."""
        return None if value is None else local_hostname(value)

    @field_validator("instance_name")
    @classmethod
    def _check_instance_name(cls, value: str | None) -> str | None:
        """Non-empty, no control characters, short enough for a DNS label."""
        return None if value is None else check_instance_name(value)
