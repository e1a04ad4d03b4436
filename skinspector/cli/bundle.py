"""``skinspector bundle ...`` (maintainers and clinics) and ``skinspector update`` (clinics).

Maintainers: ``bundle build``, ``bundle card-template``, ``bundle keys init|rotate``,
``bundle publish``, ``bundle refresh``. Clinic box: ``update``, ``bundle status``,
``bundle rollback``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from skinspector.cli._common import (
    CliError,
    CliInputError,
    ExistingFile,
    PathArg,
    translate_errors,
)
from skinspector.cli.serve import config_options, load_settings

__all__ = ["bundle", "update"]

DEFAULT_KEYS = Path("skinspector-keys")

ExistingDir = click.Path(exists=True, file_okay=False, path_type=Path)


def _keys_option(func: Any) -> Any:
    return click.option(
        "--keys",
        "keys_dir",
        type=PathArg,
        default=DEFAULT_KEYS,
        show_default=True,
        help="The maintainers' signing-key directory (`bundle keys init`).",
    )(func)


def _repo_option(func: Any) -> Any:
    return click.option(
        "--repo",
        "repo_dir",
        type=PathArg,
        required=True,
        help="The TUF repository directory (served by the hub, or copied to a USB stick).",
    )(func)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _warn_root_expiry(status: dict[str, Any]) -> None:
    from datetime import UTC, datetime, timedelta

    expires = datetime.fromisoformat(str(status["root_expires"]))
    if expires - datetime.now(UTC) < timedelta(days=60):
        click.echo(
            f"warning: root metadata expires {expires:%Y-%m-%d}; clinics refuse every update "
            "after that: run `skinspector bundle keys rotate` (needs the root keys) before",
            err=True,
        )


@click.group()
def bundle() -> None:
    """Signed update bundles: build, sign and publish (maintainers); status and rollback
    (clinic box). Installing is `skinspector update`."""


# --------------------------------------------------------------------------- maintainers


@bundle.command("build")
@click.option("--model", type=ExistingFile, required=True, help="Language-model GGUF (Q4_K_M).")
@click.option("--mmproj", type=ExistingFile, required=True, help="Vision-projector GGUF (F16).")
@click.option("--index", type=ExistingDir, required=True, help="Knowledge-base index directory.")
@click.option(
    "--embedder",
    type=ExistingFile,
    default=None,
    help="Query-embedder GGUF (default: the one the index bundles; must match it).",
)
@click.option("--version", "version", required=True, help="Bundle version, X.Y.Z.")
@click.option("--card", type=ExistingFile, required=True, help="Model card (Markdown).")
@click.option(
    "--out", type=PathArg, required=True, help="New bundle directory, or an archive (.tar)."
)
@click.option("--model-id", default=None, help="Name /v1/models shows (default skinspector-X.Y.Z).")
@click.option(
    "--min-server-version", default=None, help="Oldest server that can run it (default: this)."
)
@click.option("--temperature", type=float, default=None, help="Sampling default (0.7).")
@click.option("--top-p", type=float, default=None, help="Sampling default (0.95).")
@click.option("--top-k", type=int, default=None, help="Sampling default (25).")
@click.option("--repeat-penalty", type=float, default=None, help="Sampling default (1.0).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@translate_errors
def build(
    model: Path,
    mmproj: Path,
    index: Path,
    embedder: Path | None,
    version: str,
    card: Path,
    out: Path,
    model_id: str | None,
    min_server_version: str | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    repeat_penalty: float | None,
    as_json: bool,
) -> None:
    """Build a bundle: model, projector, index (with its query embedder) and model card,
    with a manifest listing every file's size and SHA-256."""
    from pydantic import ValidationError

    from skinspector.core.settings import SamplingSettings
    from updates.build import build_bundle

    chosen = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "repeat_penalty": repeat_penalty,
    }
    try:
        sampling = SamplingSettings(**{k: v for k, v in chosen.items() if v is not None})
    except ValidationError as exc:
        raise CliInputError(f"bad sampling default: {exc.errors()[0]['msg']}") from exc
    manifest = build_bundle(
        model=model,
        mmproj=mmproj,
        index=index,
        embedder=embedder,
        card=card,
        version=version,
        out=out,
        model_id=model_id,
        sampling=sampling,
        min_server_version=min_server_version,
        progress=True,
    )
    if as_json:
        _echo_json(json.loads(manifest.to_bytes()))
        return
    total = sum(f.size for f in manifest.files)
    click.echo(
        f"built bundle {manifest.version} at {out}: {len(manifest.files)} files, {total} bytes"
    )
    click.echo(f"intended use: {manifest.intended_use}")


@bundle.command("card-template")
def card_template() -> None:
    """Print a model-card template (Markdown) to fill in for `bundle build --card`."""
    from updates.card import CARD_TEMPLATE

    click.echo(CARD_TEMPLATE, nl=False)


@bundle.group()
def keys() -> None:
    """The maintainers' signing keys (one Ed25519 key per file, mode 0600)."""


@keys.command("init")
@_keys_option
@_repo_option
@click.option("--root-keys", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option(
    "--threshold",
    type=click.IntRange(1, 9),
    default=2,
    show_default=True,
    help="Root keys needed to sign root metadata.",
)
@translate_errors
def keys_init(keys_dir: Path, repo_dir: Path, root_keys: int, threshold: int) -> None:
    """Create the keys (root-1..N, targets, snapshot, timestamp) and a new repository."""
    from updates.errors import KeyStoreError
    from updates.keys import KeyStore
    from updates.repository import Repository

    if threshold > root_keys:
        raise CliInputError("--threshold cannot exceed --root-keys")
    if (repo_dir / "metadata" / "root.json").exists():
        raise KeyStoreError(f"{repo_dir} already holds a repository")
    store = KeyStore(keys_dir)
    store.create(root_keys)
    repo = Repository.create(repo_dir, store, root_threshold=threshold)
    fingerprint = hashlib.sha256(repo.root_bytes()).hexdigest()
    click.echo(f"keys written to {keys_dir} (mode 0600): {', '.join(store.names())}")
    click.echo(f"repository created at {repo_dir} (root: {threshold} of {root_keys} keys)")
    click.echo(f"trusted root for clinics: {repo.metadata_dir / '1.root.json'}")
    click.echo(f"root fingerprint (SHA-256, check it out of band): {fingerprint}")
    click.echo("Keep root and targets keys offline; keep the root keys apart from each other.")


@keys.command("rotate")
@click.argument("key_name")
@_keys_option
@_repo_option
@translate_errors
def keys_rotate(key_name: str, keys_dir: Path, repo_dir: Path) -> None:
    """Replace KEY_NAME (root-N, targets, snapshot or timestamp) through a new root version
    signed by a threshold of the old and the new root keys."""
    from updates.keys import KeyStore
    from updates.repository import Repository

    repo = Repository(repo_dir, KeyStore(keys_dir))
    root = repo.rotate(key_name)
    click.echo(
        f"rotated {key_name}: root is now version {root.version} (old key moved to "
        f"{keys_dir / 'retired'}); targets, snapshot and timestamp re-signed"
    )


@bundle.command("publish")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, path_type=Path))
@_repo_option
@_keys_option
@click.option(
    "--keep",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Bundles kept in the repository (older ones are removed).",
)
@translate_errors
def publish(bundle_path: Path, repo_dir: Path, keys_dir: Path, keep: int) -> None:
    """Add BUNDLE (directory or .tar) as the newest target; re-sign targets, snapshot and
    timestamp."""
    from updates.keys import KeyStore
    from updates.repository import Repository

    repo = Repository(repo_dir, KeyStore(keys_dir))
    published = repo.publish(bundle_path, keep=keep, progress=True)
    status = repo.status()
    click.echo(
        f"published bundle {published.version} ({published.length} bytes, sha256 "
        f"{published.sha256[:16]}...) as {published.target}"
    )
    click.echo(
        f"timestamp v{published.timestamp_version} expires {status['timestamp_expires']}; "
        f"bundles in the repository: {', '.join(status['bundles'])}"
    )
    _warn_root_expiry(status)


@bundle.command("refresh")
@_repo_option
@_keys_option
@click.option("--targets", "resign_targets", is_flag=True, help="Re-sign targets too.")
@translate_errors
def refresh(repo_dir: Path, keys_dir: Path, resign_targets: bool) -> None:
    """Re-sign snapshot and timestamp with fresh expiry (run daily on the hub, and before
    copying the repository to a USB stick)."""
    from updates.keys import KeyStore
    from updates.repository import Repository

    repo = Repository(repo_dir, KeyStore(keys_dir))
    version = repo.refresh(targets=resign_targets)
    status = repo.status()
    click.echo(f"timestamp v{version} expires {status['timestamp_expires']}")
    _warn_root_expiry(status)


# --------------------------------------------------------------------------- clinic box


@bundle.command("status")
@config_options
@click.option(
    "--verify", is_flag=True, help="Check every file of the installed bundles (exit 1 if bad)."
)
@click.option("--json", "as_json", is_flag=True)
@translate_errors
def status(config: Path | None, data_dir: Path | None, verify: bool, as_json: bool) -> None:
    """The active and previous bundles of this box, and its update trust state."""
    from skinspector.core.bundle_manifest import BundleManifest
    from skinspector.core.errors import ModelFileError
    from updates.client import UpdateClient
    from updates.errors import BundleIntegrityError, NotProvisionedError
    from updates.integrity import verify_directory
    from updates.service import bundles_dir, updates_dir
    from updates.slots import SlotStore

    settings = load_settings(config, data_dir)
    data = settings.server.data_dir
    report: dict[str, Any] = SlotStore(bundles_dir(data)).status()
    bad_active = False
    if verify:
        for name, slot in report["slots"].items():
            folder = bundles_dir(data) / name
            try:
                verify_directory(folder, BundleManifest.read(folder), installed=True)
                slot["verified"] = "ok"
            except (BundleIntegrityError, ModelFileError) as exc:
                slot["verified"] = str(exc)
                bad_active = bad_active or slot["role"] == "active"
    client = UpdateClient(updates_dir(data))
    try:
        root = client.trusted_root()
        report["trusted_root"] = {
            "version": root.version,
            "fingerprint": root.fingerprint,
            "threshold": root.threshold,
            "expires": root.expires.isoformat(),
        }
    except NotProvisionedError:
        report["trusted_root"] = None
    if as_json:
        _echo_json(report)
        if bad_active:
            raise CliError("the active bundle does not match its manifest")
        return
    if report["active"] is None:
        click.echo("active: none (the server runs the DEMO bundle)")
    else:
        click.echo(f"active:   {report['active_version']} ({report['active']})")
    previous = report["previous"]
    click.echo(
        f"previous: {report['previous_version']} ({previous})" if previous else "previous: none"
    )
    for name, slot in report["slots"].items():
        click.echo(
            f"  {name}: {slot['role']}, version {slot['version']}, "
            f"intended use: {slot['intended_use'] or '-'}"
        )
        if "verified" in slot:
            click.echo(f"    files: {slot['verified']}")
    if report["held_back"]:
        click.echo(f"held back (rolled back from): {', '.join(report['held_back'])}")
    trusted = report["trusted_root"]
    if trusted is None:
        click.echo("updates: not provisioned (skinspector update --init-root root.json)")
    else:
        click.echo(
            f"trusted root v{trusted['version']}, fingerprint {trusted['fingerprint'][:16]}..., "
            f"expires {trusted['expires']}"
        )
    if bad_active:
        raise CliError("the active bundle does not match its manifest")


@bundle.command("rollback")
@config_options
@translate_errors
def rollback(config: Path | None, data_dir: Path | None) -> None:
    """Make the previous bundle active again (a running server reloads it by itself)."""
    from updates.service import bundles_dir
    from updates.slots import SlotStore

    settings = load_settings(config, data_dir)
    slots = SlotStore(bundles_dir(settings.server.data_dir))
    with slots.lock():
        state = slots.rollback()
    click.echo(
        f"active bundle is now {slots.version(state.active)} ({state.active}); "
        f"{slots.version(state.previous)} is kept as previous and will not be reinstalled"
    )


@click.command()
@config_options
@click.option(
    "--from",
    "source",
    default=None,
    metavar="URL_OR_DIR",
    help="The hub's repository (https://hub/updates/) or a directory, e.g. a USB stick "
    "(default: the hub set with `sync set-hub`).",
)
@click.option(
    "--init-root",
    type=ExistingFile,
    default=None,
    help="Trust this root metadata file from now on (once, when the box is set up).",
)
@click.option("--check", "check_only", is_flag=True, help="Only say whether an update exists.")
@click.option("--json", "as_json", is_flag=True)
@translate_errors
def update(
    config: Path | None,
    data_dir: Path | None,
    source: str | None,
    init_root: Path | None,
    check_only: bool,
    as_json: bool,
) -> None:
    """Fetch, verify (TUF), install into the inactive slot, smoke-test and activate the
    newest bundle. The previous bundle is kept; a running server switches by itself."""
    from edge_server.sync_wiring import hub_update_source
    from updates.client import UpdateClient
    from updates.fetcher import UpdateSource
    from updates.service import client_for, run_update, updates_dir

    settings = load_settings(config, data_dir)
    data = settings.server.data_dir
    updates = settings.server.updates
    if init_root is not None:
        info = UpdateClient(updates_dir(data)).provision(init_root.read_bytes())
        click.echo(
            f"trusting root v{info.version} ({info.threshold} of {len(info.keyids)} keys), "
            f"fingerprint {info.fingerprint}"
        )
        if source is None:
            return
    if source is None:
        source = hub_update_source(settings)
        if source is None:
            raise CliInputError(
                "no update source: pass --from DIR_OR_URL, or configure the hub with "
                "`skinspector sync set-hub` (and provision the box with --init-root)"
            )
    outcome = run_update(
        data,
        UpdateSource.parse(source, timeout_seconds=updates.request_timeout_seconds),
        settings=updates,
        client=client_for(data, updates),
        check_only=check_only,
        progress=not as_json,
    )
    # Progress bars went to stderr and are closed; the result goes to stdout after them.
    sys.stderr.flush()
    if as_json:
        _echo_json(
            {
                "status": outcome.status,
                "message": outcome.describe(),
                "version": outcome.version,
                "active_version": outcome.active_version,
                "previous_version": outcome.previous_version,
                "slot": outcome.slot,
                "intended_use": outcome.intended_use,
            }
        )
        return
    click.echo(outcome.describe())
    if outcome.status == "installed":
        click.echo(
            f"a running server switches to it within {settings.server.bundle_watch_seconds:g} s "
            "(queued work is kept)"
        )
