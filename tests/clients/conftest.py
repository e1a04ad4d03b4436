"""Browser fixtures for the phone app; the real-server fixtures come from the edge tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import launch_chromium
from tests.edge_server.conftest import demo_bundle, live_server, live_server_factory  # noqa: F401

#: The app is opened as http://skinspector.box:PORT/app/ (mapped to 127.0.0.1), like a phone
#: on clinic Wi-Fi: plain HTTP to a LAN name is NOT a secure context, whereas 127.0.0.1 is.
#: So APIs that need one (crypto.randomUUID, service workers, navigator.storage) would fail
#: here as they would on the phone.
BOX_HOST = "skinspector.box"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
#: A cheap Android phone's viewport.
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 1,
    "is_mobile": True,
    "has_touch": True,
    "locale": "id-ID",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium(f"--host-resolver-rules=MAP {BOX_HOST} 127.0.0.1") as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(**PHONE)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # Inline scripts or styles would break under the box's Content-Security-Policy.
    tab.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield tab
    context.close()
    assert not errors, f"errors in the page: {errors}"
