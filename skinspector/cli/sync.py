"""``skinspector sync``: the clinic side of store-and-forward sync."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import click

from skinspector.cli._common import ExistingFile, translate_errors
from skinspector.cli.serve import config_options, load_settings


@click.group()
def sync() -> None:
    """Send cases to the review hub and bring reviews back."""


@sync.command("init")
@config_options
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the clinic's public identity JSON here.",
)
@translate_errors
def init(config: Path | None, data_dir: Path | None, out_file: Path | None) -> None:
    """Create this clinic's keys (once) and print its public identity for hub enrolment."""
    from edge_server.sync_wiring import clinic_keys

    settings = load_settings(config, data_dir)
    identity = clinic_keys(settings.server.data_dir, create=True).public().to_json()
    if out_file is not None:
        out_file.write_text(identity)
    click.echo(identity)


@sync.command("set-hub")
@config_options
@click.option("--url", required=True, help="The hub's base URL, e.g. https://hub.example.org")
@click.option(
    "--identity",
    "identity_file",
    type=ExistingFile,
    required=True,
    help="The hub's public identity JSON (printed by 'hub enrol-clinic').",
)
@translate_errors
def set_hub(config: Path | None, data_dir: Path | None, url: str, identity_file: Path) -> None:
    """Configure the hub this clinic sends to."""
    from edge_server.sync_wiring import save_hub_config
    from sync_agent.keys import PublicIdentity

    settings = load_settings(config, data_dir)
    identity = PublicIdentity.from_json(identity_file.read_text())
    save_hub_config(settings.server.data_dir, url, identity)
    click.echo(f"hub {identity.party_id} at {url}")


@sync.command("status")
@config_options
@click.option("--json", "as_json", is_flag=True)
@translate_errors
def status(config: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Per case: queued / sent / reviewed, the last error and the next retry."""
    from edge_server.sync_wiring import hub_config, open_outbox

    settings = load_settings(config, data_dir)
    outbox = open_outbox(settings.server.data_dir)
    try:
        entries = outbox.entries()
        counts = outbox.counts()
    finally:
        outbox.close()
    hub = hub_config(settings.server.data_dir)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "hub": hub.url if hub else None,
                    "counts": counts,
                    "cases": [
                        {
                            "case_id": e.case_id,
                            "state": e.state.value,
                            "attempts": e.attempts,
                            "last_error": e.last_error,
                            "next_attempt_at": e.next_attempt_at,
                            "sent_at": e.sent_at,
                            "reviewed_at": e.reviewed_at,
                        }
                        for e in entries
                    ],
                },
                indent=2,
            )
        )
        return
    click.echo(f"hub: {hub.url if hub else 'not configured (skinspector sync set-hub)'}")
    click.echo("  ".join(f"{state}: {n}" for state, n in counts.items()))
    now = time.time()
    for e in entries:
        line = f"{e.case_id}  {e.state.value:<9}"
        if e.state.value == "queued" and e.attempts:
            wait = max(0, e.next_attempt_at - now)
            line += f" attempts {e.attempts}, next try in {wait:.0f} s, last error: {e.last_error}"
        click.echo(line)


@sync.command("run")
@config_options
@click.option("--once", is_flag=True, help="One round, then exit (status 1 if unreachable).")
@translate_errors
def run(config: Path | None, data_dir: Path | None, once: bool) -> None:
    """Run the sync agent on its own (the server also runs it when a hub is configured)."""
    from edge_server.store import CaseStore
    from edge_server.sync_wiring import build_agent, open_outbox

    settings = load_settings(config, data_dir)
    store = CaseStore(settings.server.data_dir)
    outbox = open_outbox(settings.server.data_dir)
    try:
        agent = build_agent(settings, store, outbox)
        if agent is None:
            raise click.ClickException(
                "sync is not configured: run 'skinspector sync init' and 'sync set-hub'"
            )

        async def main() -> None:
            if once:
                report = await agent.sync_once()
                click.echo(
                    json.dumps(
                        {
                            "online": report.online,
                            "sent": report.sent,
                            "failed": report.failed,
                            "deferred": report.deferred,
                            "reviews": report.reviews,
                            "error": report.error,
                        }
                    )
                )
                if not report.online:
                    raise SystemExit(1)
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await agent.run(stop)

        asyncio.run(main())
    finally:
        outbox.close()
        store.close()
