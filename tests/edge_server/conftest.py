"""A real server on 127.0.0.1 in a background thread, serving the tiny demo bundle."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_server.bundle import ActiveBundle
from edge_server.devices import DeviceRegistry
from edge_server.server import RunningServer, start_server
from edge_server.settings import EdgeSettings
from skinspector.core.samples import lesion_photo
from tests.threaded_loop import serve_in_background
from training.demo_bundle import ensure_demo_bundle


@pytest.fixture(scope="session")
def demo_bundle(cache_dir: Path) -> ActiveBundle:
    return ActiveBundle.open(ensure_demo_bundle(cache_dir))


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    settings: EdgeSettings
    running: RunningServer
    loop: asyncio.AbstractEventLoop

    def registry(self, **kwargs: Any) -> DeviceRegistry:
        return DeviceRegistry(
            self.data_dir / "devices.sqlite3", self.settings.server.pairing, **kwargs
        )

    def pair(self, name: str = "phone") -> str:
        """Pair like a phone: code from the box (CLI side), exchanged over HTTP."""
        with self.registry() as registry:
            code = registry.create_pairing_code().code
        response = httpx.post(f"{self.url}/api/v1/pair", json={"code": code, "device_name": name})
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def client(self, token: str | None = None, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = 120.0, verify: str | bool = True) -> None:
        context: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        with httpx.Client(base_url=self.url, verify=context) as client:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if client.get("/readyz").status_code == 200:
                    return
                time.sleep(0.1)
        raise TimeoutError("server not ready")


def server_settings(data_dir: Path, cache_dir: Path, **server: Any) -> EdgeSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "mdns": {"enabled": False},
        "analysis": {"findings_max_tokens": 12, "report_max_tokens": 24, "references": 3},
        # The LAN name the browser tests open the app by (tests/clients), as a clinic that
        # names its box would configure it; other names are refused (DNS rebinding).
        "allowed_hosts": ["skinspector.box"],
    }
    base.update(server)
    return EdgeSettings(
        cache_dir=cache_dir,
        engine={"n_ctx": 4096, "n_threads": 2, "sampling": {"seed": 7}},
        server=base,
    )


@pytest.fixture
def live_server_factory(
    demo_bundle: ActiveBundle, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with contextlib.ExitStack() as stack:

        def make(
            data_dir: Path | None = None, bundle: ActiveBundle | None = None, **server: Any
        ) -> LiveServer:
            data_dir = data_dir or tmp_path_factory.mktemp("data")
            settings = server_settings(data_dir, cache_dir, **server)
            served = bundle or demo_bundle
            bg = stack.enter_context(
                serve_in_background(
                    lambda: start_server(settings, served), lambda running: running.stop()
                )
            )
            return LiveServer(bg.running.url, data_dir, settings, bg.running, bg.loop)

        yield make


@pytest.fixture
def live_server(live_server_factory: Any) -> LiveServer:
    server: LiveServer = live_server_factory()
    server.wait_ready()
    return server


def photo(seed: int = 1, width: int = 1024, height: int = 768) -> bytes:
    return lesion_photo(width, height, seed=seed)
