"""kill -9 in the middle of activation: after a restart the old bundle, or the new one in
full, is active and serving; never a mix."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from skinspector.core.bundle_manifest import BundleManifest
from tests.updates.helpers import RealBundles, assert_serving, clinic_server, install
from updates.integrity import verify_directory
from updates.slots import SlotStore

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("activation_child.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("unpacked", "1.1.0"),
        ("previous-released", "1.1.0"),
        ("slot-cleared", "1.1.0"),
        ("installed", "1.1.0"),
        ("smoke-tested", "1.1.0"),
        ("switched", "1.2.0"),
    ],
)
def test_killed_in_the_middle_of_activation(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path, step: str, expected: str
) -> None:
    data = tmp_path / "data"
    install(data, real_bundles.archives["1.0.0"])
    install(data, real_bundles.archives["1.1.0"])  # active slot-b, previous slot-a
    new = real_bundles.build("1.2.0")
    child = subprocess.run(
        [sys.executable, str(CHILD), str(data), str(new), step], cwd=ROOT, check=False
    )
    assert child.returncode == -signal.SIGKILL, "the child was not killed at the step"

    # "Restart": what the pointer names is complete, file by file.
    slots = SlotStore(data / "bundles")
    state = slots.state()
    active = data / "bundles" / str(state.active)
    manifest = BundleManifest.read(active)
    assert manifest.version == expected
    verify_directory(active, manifest)
    if state.previous is not None:  # a fallback must be complete too
        previous = data / "bundles" / state.previous
        verify_directory(previous, BundleManifest.read(previous))
    pointer = json.loads((data / "bundles" / "active.json").read_text())
    assert pointer["version"] == expected

    with clinic_server(data, cache_dir) as live:
        live.wait_ready()
        token = live.pair()
        assert_serving(live, token, expected)

    # The next update recovers from whatever the crash left in staging.
    if expected != "1.2.0":
        install(data, new)
        assert slots.status()["active_version"] == "1.2.0"
