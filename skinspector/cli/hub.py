"""``skinspector hub ...``: run the review hub and manage its clinics and reviewers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from skinspector.cli._common import CliError, ExistingFile, PathArg, translate_errors

__all__ = ["hub"]

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(func: F) -> F:
    """--data-dir, shared by every hub command."""
    return click.option(
        "--data-dir",
        type=PathArg,
        default=Path("skinspector-hub"),
        show_default=True,
        help="The hub's database and keys.",
    )(func)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


@click.group()
def hub() -> None:
    """The review hub: receives sealed cases from clinics, serves the review UI."""


@hub.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8090, show_default=True, help="Listen port."
)
@click.option("--tls-cert", type=ExistingFile, default=None, help="PEM certificate (HTTPS).")
@click.option("--tls-key", type=ExistingFile, default=None, help="PEM private key.")
@click.option(
    "--secure-cookies/--no-secure-cookies",
    default=None,
    help="Mark the session cookie Secure (default: only with --tls-cert; force it on "
    "behind a TLS-terminating reverse proxy).",
)
@click.option(
    "--updates-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Signed update repository served under /updates/ (default: DATA_DIR/updates).",
)
@translate_errors
def serve(
    data_dir: Path,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    secure_cookies: bool | None,
    updates_dir: Path | None,
) -> None:
    """Run the hub: clinic API under /api/v1, review UI under /review/.

    The hub's keys are generated in DATA_DIR/hub-keys.json on first start. Serve it over
    TLS (--tls-cert/--tls-key, or a reverse proxy) whenever it is reachable from a network.
    """
    from pydantic import ValidationError

    from review_hub.server import run_hub_forever
    from review_hub.settings import HubSettings

    try:
        settings = HubSettings(
            data_dir=data_dir,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            secure_cookies=secure_cookies,
            updates_dir=updates_dir,
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc.errors()[0]["msg"])) from None
    run_hub_forever(settings)


@hub.command("enrol-clinic")
@data_dir_option
@click.option("--name", required=True, help="The clinic's display name (shown to reviewers).")
@click.option(
    "--identity",
    "identity_file",
    type=ExistingFile,
    required=True,
    help="The clinic's public identity JSON (from the clinic box).",
)
@translate_errors
def enrol_clinic(data_dir: Path, name: str, identity_file: Path) -> None:
    """Enrol a clinic, then print the hub's public identity JSON for its configuration.

    Check the clinic's party id with the clinic out of band (phone, in person) before
    enrolling: it is the fingerprint of the key its cases will be signed with.
    """
    from review_hub.store import HubStore, load_or_create_hub_keys
    from sync_agent.keys import PublicIdentity

    identity = PublicIdentity.from_json(identity_file.read_text(encoding="utf-8"))
    keys = load_or_create_hub_keys(data_dir / "hub-keys.json")
    with HubStore(data_dir / "hub.sqlite3") as store:
        record, created = store.enrol_clinic(identity, name)
    verb = "enrolled" if created else "already enrolled (name updated)"
    click.echo(f"{verb}: {record.name} ({record.party_id})", err=True)
    click.echo("Give the clinic this hub identity:", err=True)
    click.echo(keys.public().to_json())


@hub.command("revoke-clinic")
@data_dir_option
@click.argument("party_id")
@translate_errors
def revoke_clinic(data_dir: Path, party_id: str) -> None:
    """Revoke clinic PARTY_ID at once: its envelopes and review fetches are refused.

    Revocation is permanent for that party id: the clinic enrols again with new keys.
    """
    from review_hub.store import HubStore

    with HubStore(data_dir / "hub.sqlite3") as store:
        revoked = store.revoke_clinic(party_id)
    if not revoked:
        raise CliError(f"no active clinic {party_id}")
    click.echo(f"revoked {party_id}")


@hub.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@translate_errors
def clinics(data_dir: Path, as_json: bool) -> None:
    """List enrolled clinics (revoked ones too)."""
    from review_hub.store import HubStore

    with HubStore(data_dir / "hub.sqlite3") as store:
        found = store.list_clinics()
    rows = [
        {
            "party_id": c.party_id,
            "name": c.name,
            "enrolled_at": c.enrolled_at,
            "revoked_at": c.revoked_at,
        }
        for c in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no enrolled clinics")
    for c in found:
        state = "active" if c.active else f"revoked {_when(c.revoked_at)}"
        click.echo(f"{c.party_id}  {state:<28} {c.name}")


@hub.command("add-reviewer")
@data_dir_option
@click.argument("username")
@click.option(
    "--display-name", default=None, help="Name the clinic sees on reviews (default: USERNAME)."
)
@translate_errors
def add_reviewer(data_dir: Path, username: str, display_name: str | None) -> None:
    """Create a dermatologist account USERNAME; the password is asked twice (12+ chars)."""
    from review_hub.passwords import check_password_policy
    from review_hub.store import HubStore, normalise_username

    username = normalise_username(username)
    password: str = click.prompt(
        "Password (at least 12 characters)", hide_input=True, confirmation_prompt=True
    )
    check_password_policy(password)
    with HubStore(data_dir / "hub.sqlite3") as store:
        reviewer = store.add_reviewer(username, display_name or username, password)
    click.echo(f"added reviewer {reviewer.username} ({reviewer.display_name})")
