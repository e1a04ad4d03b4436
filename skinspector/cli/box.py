"""``skinspector box ...`` (install, backup, restore) and ``skinspector doctor``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click

from skinspector.cli._common import CliError, CliInputError, PathArg, translate_errors
from skinspector.cli.serve import config_options, load_settings


def _recovery_banner(secret: str, saved_to: Path | None) -> str:
    lines = [
        "",
        "RECOVERY KEY - keep it OFFLINE (paper or a USB stick in the clinic safe).",
        "Without it no backup of this box can be restored; it is not stored on the box.",
        "",
        f"    {secret}",
        "",
    ]
    if saved_to is not None:
        lines.insert(3, f"Also written to {saved_to}: move that file off the box now.")
    return "\n".join(lines)


def _make_recovery_key(data_dir: Path, save_private: Path | None, force: bool) -> None:
    from edge_server.box.backup import PUBLIC_KEY_FILE, RecoveryKey, save_public_key
    from skinspector.core.storage import make_private_dir, write_atomic

    if (data_dir / PUBLIC_KEY_FILE).exists() and not force:
        raise CliInputError(
            f"{data_dir / PUBLIC_KEY_FILE} exists; pass --force to replace it (backups made "
            "with the old key still need the old private key)"
        )
    key = RecoveryKey.generate()
    make_private_dir(data_dir)
    save_public_key(data_dir, key)
    if save_private is not None:
        write_atomic(save_private, (key.secret_text + "\n").encode(), mode=0o600)
    click.echo(_recovery_banner(key.secret_text, save_private))


_MARKS = {
    "id": {"ok": "[ OK ]", "warn": "[PERLU]", "fail": "[GAGAL]"},
    "en": {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"},
}


@click.group()
def box() -> None:
    """Install and look after a clinic box: systemd service, backups, recovery key."""


@box.command("install")
@click.option(
    "--data-dir",
    type=PathArg,
    default=Path("/var/lib/skinspector"),
    show_default=True,
    help="Where cases, photos, keys and bundles live.",
)
@click.option("--config", type=PathArg, default=None, help="TOML settings file for serve.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Listen port.")
@click.option(
    "--executable",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The skinspector program the service runs (default: this one).",
)
@click.option("--user", default="skinspector", show_default=True, help="Service user.")
@click.option(
    "--watchdog-seconds",
    type=click.IntRange(10, 3600),
    default=60,
    show_default=True,
    help="systemd restarts the server if it stops answering for this long.",
)
@click.option(
    "--root",
    type=PathArg,
    default=Path("/"),
    help="Write everything under this folder instead of / (staging, tests).",
)
@click.option("--dry-run", is_flag=True, help="Print the unit file and change nothing.")
@click.option("--no-enable", is_flag=True, help="Do not enable and start the service.")
@click.option(
    "--recovery-key-out",
    type=PathArg,
    default=None,
    help="Also write the recovery private key to this file (move it off the box!).",
)
@translate_errors
def box_install(
    data_dir: Path,
    config: Path | None,
    port: int | None,
    executable: Path | None,
    user: str,
    watchdog_seconds: int,
    root: Path,
    dry_run: bool,
    no_enable: bool,
    recovery_key_out: Path | None,
) -> None:
    """Set up this machine as a clinic box (run as root).

    Creates the 'skinspector' user (no login shell), the data directory (0700, owned by
    that user) and a hardened systemd service that runs 'skinspector serve' and its sync
    agent, starts at boot after the network and restarts on failure. Makes the recovery
    key for backups and prints its private half once.
    """
    from edge_server.box.backup import PUBLIC_KEY_FILE
    from edge_server.box.install import InstallPlan, install, render_unit

    program = executable or Path(shutil.which("skinspector") or sys.argv[0]).resolve()
    if not data_dir.is_absolute():
        raise CliInputError("--data-dir must be an absolute path")
    plan = InstallPlan(program, data_dir, config, user, watchdog_seconds, port)
    if dry_run:
        click.echo(render_unit(plan), nl=False)
        return
    live = root.resolve() == Path("/")
    if live and hasattr(os, "geteuid") and os.geteuid() != 0:
        raise CliError("run 'sudo skinspector box install' (or pass --root DIR to stage)")
    report = install(plan, root, enable=not no_enable)
    click.echo(f"wrote {report.unit_path}")
    click.echo(f"data directory {report.data_dir} (0700)")
    for step in report.skipped:
        click.echo(f"skipped (staging root): {step}")
    if not (report.data_dir / PUBLIC_KEY_FILE).exists():
        _make_recovery_key(report.data_dir, recovery_key_out, force=False)
        if live:
            shutil.chown(report.data_dir / PUBLIC_KEY_FILE, user, user)


@box.command("uninstall")
@click.option("--root", type=PathArg, default=Path("/"), help="The root used at install.")
@translate_errors
def box_uninstall(root: Path) -> None:
    """Stop and remove the systemd service. The data directory is kept."""
    from edge_server.box.install import uninstall

    report = uninstall(root)
    for step in report.skipped:
        click.echo(f"skipped (staging root): {step}")
    click.echo(f"removed {report.unit_path}; the data directory was not touched")


@box.group("recovery-key")
def recovery_key() -> None:
    """The offline key that backups are encrypted to."""


@recovery_key.command("init")
@config_options
@click.option("--save-private", type=PathArg, default=None, help="Also write the private key here.")
@click.option("--force", is_flag=True, help="Replace an existing recovery key.")
@translate_errors
def recovery_key_init(
    config: Path | None, data_dir: Path | None, save_private: Path | None, force: bool
) -> None:
    """Make a new recovery key pair; only the public half stays on the box."""
    settings = load_settings(config, data_dir)
    _make_recovery_key(settings.server.data_dir, save_private, force)


@box.command("backup")
@config_options
@click.option("--out", "out_dir", type=PathArg, required=True, help="Folder for the backup.")
@translate_errors
def box_backup(config: Path | None, data_dir: Path | None, out_dir: Path) -> None:
    """Write an encrypted backup of cases, photos, outbox, devices, keys and settings.

    Safe while the server runs. Model bundles are not included (reinstall them with
    'skinspector update').
    """
    from edge_server.box.backup import create_backup

    settings = load_settings(config, data_dir)
    extra = {"settings.toml": config} if config is not None else {}
    done = [0]

    def progress(_name: str) -> None:  # counts only: file names may hold case ids
        done[0] += 1
        if done[0] % 50 == 0:
            click.echo(f"  {done[0]} files...", err=True)

    path = create_backup(settings.server.data_dir, out_dir, extra_files=extra, progress=progress)
    click.echo(f"backup written: {path} ({done[0]} files, {path.stat().st_size} bytes)")


@box.command("restore")
@click.option(
    "--from",
    "archive",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The .skbk backup file.",
)
@click.option(
    "--key",
    "key_text",
    envvar="SKINSPECTOR_RECOVERY_KEY",
    default=None,
    help="The recovery key (SKRK1-...), or '-' to read it from standard input.",
)
@click.option("--data-dir", type=PathArg, required=True, help="A new, empty data directory.")
@translate_errors
def box_restore(archive: Path, key_text: str | None, data_dir: Path) -> None:
    """Restore a backup into a new data directory (every case, photo and key)."""
    from edge_server.box.backup import RecoveryKey, restore_backup

    if key_text is None:
        key_text = click.prompt("Recovery key", hide_input=True)
    elif key_text == "-":
        key_text = sys.stdin.readline()
    key = RecoveryKey.from_text(key_text)
    count = [0]

    def progress(_name: str) -> None:
        count[0] += 1
        if count[0] % 50 == 0:
            click.echo(f"  {count[0]} files...", err=True)

    restored = restore_backup(archive, key, data_dir, progress=progress)
    click.echo(f"restored {len(restored)} files into {data_dir}")
    if any(name.startswith("extra/") for name in restored):
        click.echo(f"settings from the old box are in {data_dir / 'restored-extra'}")


@click.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--lang",
    type=click.Choice(["id", "en"]),
    default="id",
    show_default=True,
    help="Language: Bahasa Indonesia (id) or English (en).",
)
@click.option(
    "--timeout", type=click.FloatRange(0.1, 30), default=3.0, help="Network check timeout (s)."
)
@translate_errors
def doctor(
    config: Path | None, data_dir: Path | None, as_json: bool, lang: str, timeout: float
) -> None:
    """Check the box and say what to do: model files, disk, clock, network, server,
    certificate, hub, send queue, recent errors.

    Exit status: 0 all good, 1 something needs attention, 2 something is broken.
    """
    from edge_server.box.doctor import DoctorContext, exit_code, run_checks, summary

    settings = load_settings(config, data_dir)
    ctx = DoctorContext(settings, lang="en" if lang == "en" else "id", timeout=timeout)
    results = run_checks(ctx)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": ["ok", "warn", "fail"][exit_code(results)],
                    "summary": summary(ctx, results),
                    "checks": [r._asdict() for r in results],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        marks = _MARKS[ctx.lang]
        for r in results:
            click.echo(f"{marks[r.status.value]} {r.name}: {r.message}")
            if r.action:
                click.echo(f"        -> {r.action}")
        click.echo(summary(ctx, results))
    sys.exit(exit_code(results))
