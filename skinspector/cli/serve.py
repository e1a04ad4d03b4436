"""``skinspector serve``, ``pair`` and ``devices``: the clinic box."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from skinspector.cli._common import ExistingFile, PathArg, demo_builder, translate_errors

F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    """--config and --data-dir, shared by every server-side command."""
    func = click.option(
        "--data-dir",
        type=PathArg,
        default=None,
        help="Cases, devices and bundles (default: ./skinspector-data).",
    )(func)
    return click.option(
        "--config",
        "config",
        type=ExistingFile,
        default=None,
        help="TOML settings file.",
    )(func)


def load_settings(config: Path | None, data_dir: Path | None, **server: Any) -> Any:
    from edge_server.settings import EdgeSettings

    overrides = {k: v for k, v in server.items() if v is not None}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return EdgeSettings.load(config, **({"server": overrides} if overrides else {}))


@click.command()
@config_options
@click.option("--host", default=None, help="Listen address (default 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Default 8080.")
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Serve this bundle directory.",
)
@click.option(
    "--tls-cert",
    type=ExistingFile,
    default=None,
    help="PEM certificate (with --tls-key: HTTPS).",
)
@click.option(
    "--tls-key",
    type=ExistingFile,
    default=None,
    help="PEM private key.",
)
@click.option("--no-mdns", is_flag=True, help="Do not announce the box by mDNS.")
@click.option(
    "--mdns-interface",
    "mdns_interfaces",
    multiple=True,
    help="Announce only on this IP address (repeat); default: all.",
)
@translate_errors
def serve(
    config: Path | None,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    bundle_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    no_mdns: bool,
    mdns_interfaces: tuple[str, ...],
) -> None:
    """Run the clinic server (HTTP API, phone app, mDNS announcement).

    With no bundle installed, a maintainer's machine (the 'train' extra) serves the DEMO
    bundle (random-weights model) and says so in the log, the API and the web page; a clinic
    box says how to install a signed bundle instead.
    """
    from edge_server.server import run_forever

    mdns: dict[str, Any] = {}
    if no_mdns:
        mdns["enabled"] = False
    if mdns_interfaces:
        mdns["interfaces"] = list(mdns_interfaces)
    settings = load_settings(
        config,
        data_dir,
        host=host,
        port=port,
        bundle_dir=bundle_dir,
        tls_cert=tls_cert,
        tls_key=tls_key,
        mdns=mdns or None,
    )
    run_forever(settings, demo_builder(), notify_environ=dict(os.environ))


@click.command()
@config_options
@click.option(
    "--base-url",
    default=None,
    help="URL phones use to reach the box (default: its LAN address and port).",
)
@translate_errors
def pair(config: Path | None, data_dir: Path | None, base_url: str | None) -> None:
    """Show a one-time pairing code and a QR code for a phone to scan."""
    from edge_server.devices import DeviceRegistry
    from edge_server.qr import pairing_url, qr_terminal

    settings = load_settings(config, data_dir)
    server = settings.server
    server.data_dir.mkdir(parents=True, exist_ok=True)
    registry = DeviceRegistry(server.data_dir / "devices.sqlite3", server.pairing)
    try:
        code = registry.create_pairing_code()
    finally:
        registry.close()
    url = pairing_url(base_url or _phone_base_url(server), code.code)
    click.echo(qr_terminal(url))
    click.echo(f"Pairing code: {code.code}")
    click.echo(f"Open on the phone: {url}")
    minutes = max(1, round((code.expires_at - time.time()) / 60))
    click.echo(f"The code works once and expires in {minutes} minutes.")


def _phone_base_url(server: Any) -> str:
    """Where phones reach the box: the configured public URL; else the address and port the
    server running on this data directory listens on (it records them when it starts);
    else the settings' port on this machine's LAN address."""
    from edge_server.server import phone_url, read_server_record

    if server.public_base_url:
        return str(server.public_base_url)
    record = read_server_record(server.data_dir)
    if record is not None:
        return str(record["phone_url"])
    scheme = "https" if server.tls_cert else "http"
    click.echo(
        f"(no server is running on {server.data_dir}; using the configured port {server.port})",
        err=True,
    )
    return phone_url(scheme, server.host, server.port)


@click.group()
def devices() -> None:
    """Paired phones: list them, revoke one."""


@devices.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True)
@translate_errors
def list_devices(config: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List paired devices (revoked ones too)."""
    from edge_server.devices import DeviceRegistry

    settings = load_settings(config, data_dir)
    registry = DeviceRegistry(settings.server.data_dir / "devices.sqlite3", settings.server.pairing)
    try:
        found = registry.list_devices()
    finally:
        registry.close()
    rows = [
        {
            "id": d.id,
            "name": d.name,
            "created_at": d.created_at,
            "last_seen": d.last_seen,
            "revoked": d.revoked_at is not None,
        }
        for d in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no paired devices")
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        click.echo(f"{row['id']}  {state:<8} {row['name']}")


@devices.command("revoke")
@click.argument("device_id")
@config_options
@translate_errors
def revoke(device_id: str, config: Path | None, data_dir: Path | None) -> None:
    """Revoke DEVICE_ID: its token stops working at once."""
    from edge_server.devices import DeviceRegistry

    settings = load_settings(config, data_dir)
    registry = DeviceRegistry(settings.server.data_dir / "devices.sqlite3", settings.server.pairing)
    try:
        revoked = registry.revoke(device_id)
    finally:
        registry.close()
    if not revoked:
        raise click.ClickException(f"no active device {device_id}")
    click.echo(f"revoked {device_id}")
