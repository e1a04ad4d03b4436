"""``skinspector doctor``: health checks a health worker can run or read out by phone.

Each check is a small function from a :class:`DoctorContext` (the data directory, the
settings and the injectable outside world: clock, free-space source, timeouts) to a
:class:`CheckResult` with a status, a localized message and an action. The checks only
read: databases are opened read-only and nothing in the data directory changes.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from edge_server.box.messages import Lang, text
from edge_server.settings import EdgeSettings

__all__ = [
    "CHECKS",
    "CheckResult",
    "DoctorContext",
    "Status",
    "Thresholds",
    "exit_code",
    "run_checks",
]

DAY = 86_400.0
_MAX_DAYS_SHOWN = 3650  # "10 years or more" is all anyone needs to hear


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class CheckResult(NamedTuple):
    name: str
    status: Status
    message: str
    action: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a check warns or fails (defaults sized for a clinic box)."""

    disk_fail_days: float = 7.0
    disk_warn_days: float = 30.0
    disk_fail_bytes: int = 1 << 30  # under 1 GiB free fails whatever the intake rate
    intake_window_days: float = 14.0
    clock_slack_seconds: float = 300.0
    tls_warn_days: float = 21.0
    outbox_warn_days: float = 3.0
    errors_window_days: float = 7.0


@dataclass
class DoctorContext:
    settings: EdgeSettings
    lang: Lang = "id"
    clock: Callable[[], float] = time.time
    disk_free: Callable[[Path], int] = field(default=lambda p: shutil.disk_usage(p).free)
    lan_addresses: Callable[[], list[str]] | None = None
    timeout: float = 3.0
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def data_dir(self) -> Path:
        return self.settings.server.data_dir

    def result(self, name: str, status: Status, key: str, **fields: object) -> CheckResult:
        message, action = text(self.lang, key, **fields)
        return CheckResult(name, status, message, action)


# ---------------------------------------------------------------------------- helpers


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # unreachable


def _age(ctx: DoctorContext, seconds: float) -> str:
    if seconds >= DAY:
        return text(ctx.lang, "age.days", n=int(seconds // DAY))[0]
    if seconds >= 3600:
        return text(ctx.lang, "age.hours", n=int(seconds // 3600))[0]
    return text(ctx.lang, "age.minutes", n=max(0, int(seconds // 60)))[0]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@contextlib.contextmanager
def _read_db(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection, or None when the file does not exist yet."""
    if not path.is_file():
        yield None
        return
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        yield db
    finally:
        db.close()


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


def _cases_db(ctx: DoctorContext) -> Path:
    return ctx.data_dir / "cases.sqlite3"


# ---------------------------------------------------------------------------- checks


def check_bundle(ctx: DoctorContext) -> CheckResult:
    """The active bundle is there and every file matches the manifest's SHA-256."""
    from edge_server.bundle import ActiveBundle, bundle_candidates
    from skinspector.core.errors import SkinspectorError
    from updates.integrity import verify_directory

    name = "bundle"
    if ctx.settings.server.bundle_dir is not None:
        candidates = [("configured", ctx.settings.server.bundle_dir)]
    else:
        candidates, _ = bundle_candidates(ctx.data_dir)
    if not candidates:
        return ctx.result(name, Status.FAIL, "bundle.none")
    slot, folder = candidates[0]
    version = slot
    try:
        bundle = ActiveBundle.open(folder, slot)
        version = bundle.version
        if not bundle.manifest.files:
            return ctx.result(name, Status.WARN, "bundle.unsigned", version=version)
        verify_directory(folder, bundle.manifest, installed=True)
    except SkinspectorError as exc:
        return ctx.result(name, Status.FAIL, "bundle.bad", version=version, reason=str(exc))
    return ctx.result(name, Status.OK, "bundle.ok", version=version)


class Intake(NamedTuple):
    bytes_per_day: float
    cases: int


def intake_rate(db_path: Path, now: float, window_days: float) -> Intake:
    """Photo bytes stored per day over the last ``window_days`` (from the case store)."""
    since = now - window_days * DAY
    with _read_db(db_path) as db:
        if db is None or not _has_table(db, "cases"):
            return Intake(0.0, 0)
        row = db.execute(
            "SELECT COUNT(DISTINCT c.id), COALESCE(SUM(p.bytes), 0), MIN(c.created_at) "
            "FROM cases c LEFT JOIN photos p ON p.case_id = c.id WHERE c.created_at >= ?",
            (since,),
        ).fetchone()
    count, total, first = int(row[0]), float(row[1]), row[2]
    if count == 0:
        return Intake(0.0, 0)
    # Over the whole window, or since the first case when the box is newer than that.
    span = max(now - min(float(first), now), DAY) if first is not None else window_days * DAY
    span = min(span, window_days * DAY)
    return Intake(total / (span / DAY), count)


def check_disk(ctx: DoctorContext) -> CheckResult:
    name, t = "disk", ctx.thresholds
    free = ctx.disk_free(ctx.data_dir)
    rate = intake_rate(_cases_db(ctx), ctx.clock(), t.intake_window_days)
    days = free / rate.bytes_per_day if rate.bytes_per_day > 0 else float("inf")
    shown = f"{_MAX_DAYS_SHOWN}+" if days > _MAX_DAYS_SHOWN else str(int(days))
    if free < t.disk_fail_bytes or days < t.disk_fail_days:
        return ctx.result(name, Status.FAIL, "disk.full", free=_size(free), days=shown)
    if days < t.disk_warn_days:
        return ctx.result(name, Status.WARN, "disk.low", free=_size(free), days=shown)
    if rate.cases == 0:
        return ctx.result(name, Status.OK, "disk.ok_idle", free=_size(free))
    return ctx.result(name, Status.OK, "disk.ok", free=_size(free), days=shown)


def newest_timestamp(data_dir: Path) -> float | None:
    """The newest time recorded on the box: cases, the outbox, and file modification times
    of the records the server writes."""
    found: list[float] = []
    with _read_db(data_dir / "cases.sqlite3") as db:
        if db is not None:
            if _has_table(db, "cases"):
                row = db.execute("SELECT MAX(created_at), MAX(updated_at) FROM cases").fetchone()
                found += [float(v) for v in row if v is not None]
            if _has_table(db, "sync_outbox"):
                row = db.execute(
                    "SELECT MAX(enqueued_at), MAX(sent_at), MAX(reviewed_at) FROM sync_outbox"
                ).fetchone()
                found += [float(v) for v in row if v is not None]
    for name in ("bundles/active.json", "cases.sqlite3"):
        with contextlib.suppress(OSError):
            found.append((data_dir / name).stat().st_mtime)
    return max(found) if found else None


def check_clock(ctx: DoctorContext) -> CheckResult:
    now = ctx.clock()
    newest = newest_timestamp(ctx.data_dir)
    if newest is not None and now + ctx.thresholds.clock_slack_seconds < newest:
        return ctx.result(
            "clock", Status.FAIL, "clock.behind", now=_when(now), newest=_when(newest)
        )
    return ctx.result("clock", Status.OK, "clock.ok", now=_when(now))


def _scheme(ctx: DoctorContext) -> str:
    return "https" if ctx.settings.server.tls_cert else "http"


def pairing_url(ctx: DoctorContext) -> str:
    from edge_server.server import phone_url, read_server_record

    server = ctx.settings.server
    if server.public_base_url:
        return server.public_base_url
    record = read_server_record(ctx.data_dir)
    if record is not None:
        return str(record["phone_url"])
    return phone_url(_scheme(ctx), server.host, server.port)


def check_network(ctx: DoctorContext) -> CheckResult:
    if ctx.lan_addresses is not None:
        addresses = ctx.lan_addresses()
    else:
        from edge_server.mdns.network import local_ipv4_addresses

        addresses = local_ipv4_addresses()
    url = pairing_url(ctx)
    if not addresses:
        return ctx.result("network", Status.WARN, "network.none", url=url)
    return ctx.result("network", Status.OK, "network.ok", addresses=", ".join(addresses), url=url)


def _local_port(ctx: DoctorContext) -> int:
    from edge_server.server import read_server_record

    record = read_server_record(ctx.data_dir)
    if record is not None and isinstance(record.get("port"), int):
        return int(record["port"])
    return ctx.settings.server.port


def check_server(ctx: DoctorContext) -> CheckResult:
    url = f"{_scheme(ctx)}://127.0.0.1:{_local_port(ctx)}/healthz"
    context = None
    if url.startswith("https"):
        # Loopback liveness only: the certificate is judged by the tls check.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=ctx.timeout, context=context) as response:  # noqa: S310
            ok = response.status == 200
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        ok, reason = False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        ok, reason = False, type(getattr(exc, "reason", exc)).__name__
    if not ok:
        return ctx.result("server", Status.FAIL, "server.down", url=url, reason=reason)
    return ctx.result("server", Status.OK, "server.ok", url=url)


def check_tls(ctx: DoctorContext) -> CheckResult:
    from cryptography import x509

    cert = ctx.settings.server.tls_cert
    if cert is None:
        return ctx.result("tls", Status.OK, "tls.off")
    try:
        parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        return ctx.result("tls", Status.FAIL, "tls.bad", reason=f"{cert}: {type(exc).__name__}")
    now = ctx.clock()
    start = parsed.not_valid_before_utc.timestamp()
    until = parsed.not_valid_after_utc.timestamp()
    if now < start:
        return ctx.result("tls", Status.FAIL, "tls.bad", reason=f"not valid before {_when(start)}")
    if now > until:
        return ctx.result("tls", Status.FAIL, "tls.bad", reason=f"expired on {_when(until)}")
    days = (until - now) / DAY
    if days < ctx.thresholds.tls_warn_days:
        return ctx.result("tls", Status.WARN, "tls.soon", until=_when(until), days=int(days))
    return ctx.result("tls", Status.OK, "tls.ok", until=_when(until))


def hub_url(ctx: DoctorContext) -> str | None:
    if ctx.settings.server.sync.hub_url:
        return ctx.settings.server.sync.hub_url
    path = ctx.data_dir / "sync" / "hub.json"
    try:
        import json

        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_hub(ctx: DoctorContext) -> CheckResult:
    """A TCP connection to the hub's host and port within the timeout (no request sent)."""
    url = hub_url(ctx)
    if url is None:
        return ctx.result("hub", Status.OK, "hub.off")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=ctx.timeout):
            pass
    except OSError as exc:
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return ctx.result("hub", Status.WARN, "hub.down", host=where, reason=reason)
    return ctx.result("hub", Status.OK, "hub.ok", host=where)


def check_outbox(ctx: DoctorContext) -> CheckResult:
    """Cases not yet acknowledged by the hub: count, oldest age, photo bytes waiting."""
    with _read_db(_cases_db(ctx)) as db:
        if db is None or not _has_table(db, "sync_outbox"):
            return ctx.result("outbox", Status.OK, "outbox.ok")
        row = db.execute(
            "SELECT COUNT(*), MIN(enqueued_at) FROM sync_outbox WHERE state = 'queued'"
        ).fetchone()
        waiting = int(
            db.execute(
                "SELECT COALESCE(SUM(p.bytes), 0) FROM sync_outbox o "
                "JOIN photos p ON p.case_id = o.case_id WHERE o.state = 'queued'"
            ).fetchone()[0]
        )
    count, oldest = int(row[0]), row[1]
    sealed_dir = ctx.data_dir / "sync" / "outbox"
    if sealed_dir.is_dir():
        waiting = max(waiting, sum(p.stat().st_size for p in sealed_dir.iterdir() if p.is_file()))
    if count == 0:
        return ctx.result("outbox", Status.OK, "outbox.ok")
    age_s = max(0.0, ctx.clock() - float(oldest))
    fields = {"count": count, "size": _size(waiting), "age": _age(ctx, age_s)}
    if age_s > ctx.thresholds.outbox_warn_days * DAY:
        return ctx.result("outbox", Status.WARN, "outbox.stuck", **fields)
    return ctx.result("outbox", Status.OK, "outbox.waiting", **fields)


def check_errors(ctx: DoctorContext) -> CheckResult:
    """Failed analyses in the window; the last error's first line (no patient data: the
    store records technical errors, never clinical context)."""
    days = int(ctx.thresholds.errors_window_days)
    since = ctx.clock() - ctx.thresholds.errors_window_days * DAY
    with _read_db(_cases_db(ctx)) as db:
        if db is None or not _has_table(db, "cases"):
            return ctx.result("errors", Status.OK, "errors.ok", days=days)
        count = int(
            db.execute(
                "SELECT COUNT(*) FROM cases WHERE status = 'failed' AND updated_at >= ?", (since,)
            ).fetchone()[0]
        )
        last = db.execute(
            "SELECT error, updated_at FROM cases WHERE status = 'failed' AND updated_at >= ? "
            "ORDER BY updated_at DESC LIMIT 1",
            (since,),
        ).fetchone()
    if count == 0:
        return ctx.result("errors", Status.OK, "errors.ok", days=days)
    first_line = (last[0] or "?").splitlines()[0][:160] if last[0] else "?"
    shown = f"{first_line} ({_when(float(last[1]))})"
    return ctx.result("errors", Status.WARN, "errors.some", count=count, days=days, last=shown)


CHECKS: tuple[tuple[str, Callable[[DoctorContext], CheckResult]], ...] = (
    ("bundle", check_bundle),
    ("disk", check_disk),
    ("clock", check_clock),
    ("network", check_network),
    ("server", check_server),
    ("tls", check_tls),
    ("hub", check_hub),
    ("outbox", check_outbox),
    ("errors", check_errors),
)


def run_checks(ctx: DoctorContext, only: tuple[str, ...] = ()) -> list[CheckResult]:
    """Every check (or ``only`` those), each isolated: one that crashes reports FAIL."""
    results = []
    for name, check in CHECKS:
        if only and name not in only:
            continue
        try:
            results.append(check(ctx))
        except sqlite3.DatabaseError as exc:
            results.append(ctx.result(name, Status.FAIL, "store.unreadable", reason=str(exc)))
    return results


def summary(ctx: DoctorContext, results: list[CheckResult]) -> str:
    fails = sum(r.status is Status.FAIL for r in results)
    warns = sum(r.status is Status.WARN for r in results)
    if fails:
        line = text(ctx.lang, "summary.fail", count=fails)[0]
        return f"{line} {text(ctx.lang, 'summary.warn', count=warns)[0]}" if warns else line
    if warns:
        return text(ctx.lang, "summary.warn", count=warns)[0]
    return text(ctx.lang, "summary.ok")[0]


def exit_code(results: list[CheckResult]) -> int:
    """0 all ok, 1 something to look at (warn), 2 something broken (fail)."""
    if any(r.status is Status.FAIL for r in results):
        return 2
    return 1 if any(r.status is Status.WARN for r in results) else 0
