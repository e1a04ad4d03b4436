"""A real clinic data directory: cases stored through CaseStore, an outbox, devices,
sync keys and an installed (fake, but hash-listed) bundle."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from edge_server.settings import EdgeSettings
from edge_server.store import CaseStatus, CaseStore, NewPhoto
from edge_server.sync_wiring import clinic_keys, open_outbox
from skinspector.core.case_schema import ClinicalContext


def photo(seed: int, size: int = 64) -> NewPhoto:
    image = Image.frombytes(
        "RGB", (size, size), os.urandom(size * size * 3) if seed else b"\x80" * (size * size * 3)
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    return NewPhoto(data, hashlib.sha256(data).hexdigest(), size, size)


def add_cases(data_dir: Path, count: int, *, failed: int = 0) -> list[str]:
    store = CaseStore(data_dir)
    try:
        ids = []
        for i in range(count):
            context = ClinicalContext(age_years=30 + i, body_site="left forearm", notes=f"n{i}")
            case = store.create_case(context, [photo(i + 1), photo(i + 2)], device_id="dev1")
            status = CaseStatus.FAILED if i < failed else CaseStatus.DONE
            store.set_status(
                case.id,
                status,
                result=None if i < failed else {"summary": "ok"},
                error="RuntimeError: model crashed" if i < failed else None,
            )
            ids.append(case.id)
        return ids
    finally:
        store.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def filled_box(data_dir: Path) -> Path:
    """Three cases (one failed), all in the outbox, clinic sync keys, a devices DB."""
    from edge_server.devices import DeviceRegistry

    ids = add_cases(data_dir, 3, failed=1)
    outbox = open_outbox(data_dir)
    try:
        for case_id in ids:
            outbox.enqueue(case_id)
    finally:
        outbox.close()
    clinic_keys(data_dir, create=True)
    settings = EdgeSettings.load(server={"data_dir": data_dir})
    with DeviceRegistry(data_dir / "devices.sqlite3", settings.server.pairing) as registry:
        registry.create_pairing_code()
    return data_dir
