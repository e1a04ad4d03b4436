"""Optional TLS, and logs that carry no patient data."""

from __future__ import annotations

import datetime
import json
import logging
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from skinspector.core.logs import JsonFormatter
from tests.edge_server.conftest import LiveServer, photo
from tests.edge_server.test_server_flow import read_events, upload

pytestmark = pytest.mark.slow


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(live_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cert, key = self_signed(tmp_path)
    server = live_server_factory(tls_cert=cert, tls_key=key)
    assert server.url.startswith("https://")
    server.wait_ready(verify=str(cert))
    context = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(f"{server.url}/healthz", verify=context).json() == {"status": "alive"}
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https", "http") + "/healthz")


def test_logs_hold_no_patient_data(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Siti-Rahmawati-RT05-SECRETNOTE"
    token = live_server.pair("ward phone")
    with caplog.at_level(logging.DEBUG), live_server.client(token) as client:
        case_id = upload(
            client, [photo(9)], {"notes": secret, "body_site": secret[:20], "language": "en"}
        ).json()["id"]
        read_events(client, case_id)
        bad = client.post(
            "/api/v1/cases",
            files=[
                ("metadata", (None, json.dumps({"notes": secret, "age_years": "x"}), "a/b")),
                ("photo", ("p.jpg", photo(1), "image/jpeg")),
            ],
        )
        assert bad.status_code == 422
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert lines
    assert not [line for line in lines if secret in line or secret[:20] in line]
    assert not [line for line in lines if token in line]
    access = [json.loads(line) for line in lines if '"logger": "skinspector.access"' in line]
    assert {"route": "/api/v1/cases", "status": 201} in [
        {"route": a["route"], "status": a["status"]} for a in access
    ]
    assert all("{case_id}" in a["route"] or case_id not in a["route"] for a in access)
