"""The phone app shows the active bundle's intended-use line (real Chromium, real box)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.clients.conftest import browser, page  # noqa: F401  (fixtures)
from tests.clients.test_phone_app import open_app, pair
from tests.updates.helpers import RealBundles, clinic_server, install

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_phone_app_shows_the_intended_use_line(
    page: Any,  # noqa: F811
    tmp_path: Path,
    real_bundles: RealBundles,
    cache_dir: Path,
) -> None:
    data = tmp_path / "clinic"
    install(data, real_bundles.archives["1.0.0"])
    with clinic_server(data, cache_dir) as live:
        live.wait_ready()
        pair(page, live)
        open_app(page, live)
        line = page.locator("#intended-use")
        expect(line).to_have_text(
            "Penggunaan yang dimaksud: Decision support for trained health workers; "
            "not a diagnosis; research use only."
        )
        expect(page.locator("#bundle-line")).to_have_text("Paket model: 1.0.0")
