"""``skinspector doctor``: every check passes on a healthy box, and each one fails when
its part of the box is broken (tampered bundle, full disk, wrong clock, closed ports...)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_server.box.doctor import DoctorContext, Status, exit_code, run_checks
from edge_server.settings import EdgeSettings
from edge_server.sync_wiring import open_outbox
from skinspector.cli import cli
from skinspector.core.bundle_manifest import BundleManifest
from tests.edge_server.box.conftest import add_cases
from tests.updates.helpers import fake_bundle, no_smoke
from updates.slots import SlotStore

DAY = 86_400.0


def _cert(folder: Path, not_after: dt.datetime, not_before: dt.datetime | None = None) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skinspector.local")])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"cert-{not_after:%Y%m%d}.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/healthz"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "alive"}')

    def log_message(self, format: str, *args: object) -> None:  # quiet
        del format, args


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub_port() -> Iterator[int]:
    """A listening TCP port standing in for the hub."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def install_fake_bundle(data_dir: Path, work: Path) -> Path:
    archive = fake_bundle(work, "1.2.0")
    slots = SlotStore(data_dir / "bundles")
    with slots.lock():
        slot = slots.install(archive, smoke=no_smoke).slot
    return data_dir / "bundles" / slot


@dataclass
class Box:
    data_dir: Path
    bundle: Path
    port: int
    hub_port: int
    tmp: Path

    def context(self, **server: object) -> DoctorContext:
        cert = server.pop("tls_cert", None)
        settings = EdgeSettings.load(
            server={
                "data_dir": self.data_dir,
                "port": self.port,
                "sync": {"hub_url": f"http://127.0.0.1:{self.hub_port}"},
                **({"tls_cert": cert, "tls_key": self.tmp / "key.pem"} if cert else {}),
                **server,
            }
        )
        return DoctorContext(
            settings,
            lang="en",
            disk_free=lambda _p: 200 << 30,
            lan_addresses=lambda: ["192.168.1.20"],
            timeout=1.0,
        )


@pytest.fixture
def box(data_dir: Path, tmp_path: Path, health_server: int, hub_port: int) -> Box:
    bundle = install_fake_bundle(data_dir, tmp_path / "work")
    ids = add_cases(data_dir, 3)
    outbox = open_outbox(data_dir)
    try:
        outbox.enqueue(ids[-1])
    finally:
        outbox.close()
    return Box(data_dir, bundle, health_server, hub_port, tmp_path)


def _by_name(ctx: DoctorContext) -> dict[str, tuple[Status, str, str]]:
    return {r.name: (r.status, r.message, r.action) for r in run_checks(ctx)}


def test_a_healthy_box_passes_every_check(box: Box) -> None:
    ctx = box.context()
    results = run_checks(ctx)
    assert [r.name for r in results] == [
        "bundle", "disk", "clock", "network", "server", "tls", "hub", "outbox", "errors",
    ]  # fmt: skip
    bad = [r for r in results if r.status is not Status.OK]
    assert bad == []
    assert exit_code(results) == 0
    found = _by_name(ctx)
    assert "1.2.0" in found["bundle"][1]
    assert "192.168.1.20" in found["network"][1]
    assert "1 cases waiting" in found["outbox"][1]


def test_doctor_only_reads(box: Box) -> None:
    def snapshot() -> dict[str, tuple[int, float]]:
        return {
            str(p.relative_to(box.data_dir)): (p.stat().st_size, p.stat().st_mtime)
            for p in box.data_dir.rglob("*")
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))  # SQLite's own
        }

    before = snapshot()
    run_checks(box.context())
    assert snapshot() == before


def test_tampered_bundle_fails(box: Box) -> None:
    model = box.bundle / BundleManifest.read(box.bundle).model
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    status, message, action = _by_name(box.context())["bundle"]
    assert status is Status.FAIL
    assert "SHA-256" in message
    assert "skinspector update" in action


def test_missing_bundle_fails(data_dir: Path, health_server: int) -> None:
    settings = EdgeSettings.load(server={"data_dir": data_dir, "port": health_server})
    results = run_checks(DoctorContext(settings, lang="en"), only=("bundle",))
    assert results[0].status is Status.FAIL
    assert "No model" in results[0].message


def test_disk_below_the_floor_fails(box: Box) -> None:
    ctx = box.context()
    ctx.disk_free = lambda _p: 200 << 20  # 200 MiB
    status, message, _ = _by_name(ctx)["disk"]
    assert status is Status.FAIL
    assert "200.0 MB" in message


def test_disk_for_a_few_days_of_photos_fails_then_warns(box: Box) -> None:
    ctx = box.context()
    photos = sum(p.stat().st_size for p in (box.data_dir / "photos").rglob("*.jpg"))
    # Three cases today: the intake rate is ``photos`` bytes a day.
    ctx.thresholds = type(ctx.thresholds)(disk_fail_bytes=0)
    ctx.disk_free = lambda _p: photos * 3
    assert _by_name(ctx)["disk"][0] is Status.FAIL
    ctx.disk_free = lambda _p: photos * 20
    status, message, _ = _by_name(ctx)["disk"]
    assert status is Status.WARN
    assert "about 20 days" in message or "about 19 days" in message


def test_clock_before_the_newest_case_fails(box: Box) -> None:
    ctx = box.context()
    ctx.clock = lambda: time.time() - 30 * DAY
    status, message, action = _by_name(ctx)["clock"]
    assert status is Status.FAIL
    assert "behind" in message
    assert "date and time" in action


def test_no_lan_address_warns(box: Box) -> None:
    ctx = box.context()
    ctx.lan_addresses = list
    assert _by_name(ctx)["network"][0] is Status.WARN


def test_server_not_running_fails(box: Box) -> None:
    status, message, _ = _by_name(box.context(port=_closed_port()))["server"]
    assert status is Status.FAIL
    assert "does not answer" in message


def test_valid_certificate_passes(box: Box) -> None:
    cert = _cert(box.tmp, dt.datetime.now(dt.UTC) + dt.timedelta(days=365))
    status, message, _ = _by_name(box.context(tls_cert=cert))["tls"]
    assert status is Status.OK
    assert "valid until" in message


def test_expired_certificate_fails(box: Box) -> None:
    expired = _cert(
        box.tmp,
        dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
    )
    status, message, _ = _by_name(box.context(tls_cert=expired))["tls"]
    assert status is Status.FAIL
    assert "expired" in message


def test_certificate_expiring_soon_warns(box: Box) -> None:
    soon = _cert(box.tmp, dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    assert _by_name(box.context(tls_cert=soon))["tls"][0] is Status.WARN


def test_unreachable_hub_warns(box: Box) -> None:
    closed = _closed_port()
    ctx = box.context(sync={"hub_url": f"http://127.0.0.1:{closed}"})
    status, message, _ = _by_name(ctx)["hub"]
    assert status is Status.WARN
    assert f"127.0.0.1:{closed}" in message


def test_old_outbox_backlog_warns(box: Box) -> None:
    ctx = box.context()
    ctx.clock = lambda: time.time() + 5 * DAY
    status, message, _ = _by_name(ctx)["outbox"]
    assert status is Status.WARN
    assert "5 days" in message


def test_failed_analyses_warn_without_patient_data(filled_box: Path) -> None:
    settings = EdgeSettings.load(server={"data_dir": filled_box})
    result = run_checks(DoctorContext(settings, lang="en"), only=("errors",))[0]
    assert result.status is Status.WARN
    assert "1 analyses failed" in result.message
    assert "model crashed" in result.message
    assert "forearm" not in result.message


def test_cli_json_english_and_exit_status(box: Box) -> None:
    result = CliRunner().invoke(
        cli,
        ["doctor", "--data-dir", str(box.data_dir), "--json", "--lang", "en", "--timeout", "1"],
        env={"SKINSPECTOR_SERVER__PORT": str(_closed_port())},
    )
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert report["status"] == "fail"
    server = next(c for c in report["checks"] if c["name"] == "server")
    assert server["status"] == "fail"
    assert server["action"]


def test_cli_speaks_bahasa_indonesia_by_default(box: Box) -> None:
    result = CliRunner().invoke(
        cli,
        ["doctor", "--data-dir", str(box.data_dir), "--timeout", "1"],
        env={
            "SKINSPECTOR_SERVER__PORT": str(box.port),
            "SKINSPECTOR_SERVER__SYNC__HUB_URL": f"http://127.0.0.1:{box.hub_port}",
        },
    )
    assert "Model 1.2.0 terpasang" in result.output
    assert "Server berjalan" in result.output
    # Real disk and network here, so only the status can vary; never a usage error.
    assert result.exit_code in (0, 1, 2)
