"""A/B slots: install into the inactive slot, atomic switch, previous kept, rollback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_server.bundle import (
    ActiveBundle,
    effective_sampling,
    resolve_bundle,
    resolve_served,
)
from skinspector.core.bundle_manifest import BundleManifest
from skinspector.core.settings import SamplingSettings
from tests.updates.helpers import fake_bundle, no_smoke, pointer_bytes
from updates.errors import (
    BundleIntegrityError,
    IncompatibleBundleError,
    SlotError,
    SmokeTestError,
)
from updates.slots import SlotStore

CACHE = Path("/nonexistent-cache")  # resolving never needs the demo bundle here


def _install(
    data: Path,
    archive: Path,
    *,
    smoke: Callable[[Path], object] = no_smoke,
    hook: Callable[[str], None] | None = None,
) -> str:
    slots = SlotStore(data / "bundles")
    with slots.lock():
        if hook is None:
            return slots.install(archive, smoke=smoke).slot
        return slots.install(archive, smoke=smoke, hook=hook).slot


def test_install_alternates_slots_and_keeps_the_previous(tmp_path: Path) -> None:
    data = tmp_path / "data"
    archives = [fake_bundle(tmp_path, v) for v in ("1.0.0", "1.1.0", "1.2.0")]
    steps: list[str] = []
    assert _install(data, archives[0], hook=steps.append) == "slot-a"
    assert steps == ["unpacked", "slot-cleared", "installed", "smoke-tested", "switched"]
    assert _install(data, archives[1]) == "slot-b"
    slots = SlotStore(data / "bundles")
    state = slots.state()
    assert (state.active, state.previous) == ("slot-b", "slot-a")
    assert resolve_bundle(data, None, CACHE).version == "1.1.0"
    steps.clear()
    assert _install(data, archives[2], hook=steps.append) == "slot-a"
    assert "previous-released" in steps
    status = slots.status()
    assert status["active_version"] == "1.2.0"
    assert status["previous_version"] == "1.1.0"
    assert not (data / "bundles" / "staging").exists()
    pointer = json.loads(pointer_bytes(data) or b"")
    assert pointer["bundle"] == "slot-a"  # the shape the server has always read


def test_rollback_swaps_and_holds_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for version in ("1.0.0", "1.1.0"):
        _install(data, fake_bundle(tmp_path, version))
    slots = SlotStore(data / "bundles")
    state = slots.rollback()
    assert (state.active, state.previous, state.held_back) == ("slot-a", "slot-b", ("1.1.0",))
    assert resolve_bundle(data, None, CACHE).version == "1.0.0"
    state = slots.rollback()  # and forward again
    assert slots.version(state.active) == "1.1.0"


def test_rollback_without_previous_is_an_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _install(data, fake_bundle(tmp_path, "1.0.0"))
    before = pointer_bytes(data)
    with pytest.raises(SlotError, match="no previous bundle"):
        SlotStore(data / "bundles").rollback()
    assert pointer_bytes(data) == before


def test_failed_smoke_test_or_bad_archive_leaves_the_pointer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _install(data, fake_bundle(tmp_path, "1.0.0"))
    before = pointer_bytes(data)

    def failing(bundle: Path) -> None:
        raise RuntimeError("model does not load")

    with pytest.raises(SmokeTestError, match="model does not load"):
        _install(data, fake_bundle(tmp_path, "1.1.0"), smoke=failing)
    assert pointer_bytes(data) == before
    assert not (data / "bundles" / "slot-b").exists()
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BundleIntegrityError):
        _install(data, broken)
    assert pointer_bytes(data) == before


def test_bundle_needing_a_newer_server_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slots = SlotStore(data / "bundles")
    with pytest.raises(IncompatibleBundleError, match=r"needs server 0\.1\.0"):
        slots.install(fake_bundle(tmp_path, "1.0.0"), smoke=no_smoke, server_version="0.0.9")
    assert pointer_bytes(data) is None


def test_one_update_at_a_time(tmp_path: Path) -> None:
    slots = SlotStore(tmp_path / "bundles")
    with slots.lock(), pytest.raises(SlotError, match="another update"), slots.lock():
        pass


def test_legacy_pointer_still_resolves_and_becomes_the_previous(tmp_path: Path) -> None:
    data = tmp_path / "data"
    legacy = data / "bundles" / "my-bundle"
    legacy.mkdir(parents=True)
    folder = fake_bundle(tmp_path, "0.9.0", archive=False)
    for item in folder.iterdir():
        item.rename(legacy / item.name)
    (data / "bundles" / "active.json").write_text(json.dumps({"bundle": "my-bundle"}))
    assert resolve_bundle(data, None, CACHE).version == "0.9.0"
    _install(data, fake_bundle(tmp_path, "1.0.0"))
    state = SlotStore(data / "bundles").state()
    assert (state.active, state.previous) == ("slot-a", "my-bundle")


def test_fallback_to_previous_when_the_active_cannot_be_opened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for version in ("1.0.0", "1.1.0"):
        _install(data, fake_bundle(tmp_path, version))
    (data / "bundles" / "slot-b" / "model" / "lm.gguf").unlink()
    served = resolve_served(data, None, CACHE)
    assert served.version == "1.0.0"
    assert served.slot == "slot-a"
    assert served.fallback is not None
    assert served.fallback.failed == "slot-b"
    assert "language model file not found" in served.fallback.reason
    assert served.info()["bundle_fallback"] == served.fallback.as_json()
    # Nothing about the previous slot failing is reported while the active one is fine.
    data2 = tmp_path / "data2"
    for version in ("1.0.0", "1.1.0"):
        _install(data2, fake_bundle(tmp_path / "second", version))
    (data2 / "bundles" / "slot-a" / "bundle.json").unlink()
    assert resolve_served(data2, None, CACHE).fallback is None


def test_bundle_sampling_defaults_yield_to_explicit_settings(tmp_path: Path) -> None:
    folder = fake_bundle(tmp_path, "1.0.0", archive=False)
    manifest = BundleManifest.read(folder)
    tuned = manifest.model_copy(update={"sampling": SamplingSettings(temperature=0.2, top_k=40)})
    bundle = ActiveBundle(folder, tuned)
    assert effective_sampling(bundle, SamplingSettings()).temperature == 0.2
    explicit = SamplingSettings(temperature=0.9, seed=7)
    chosen = effective_sampling(bundle, explicit)
    assert (chosen.temperature, chosen.top_k, chosen.seed) == (0.9, 40, 7)


def test_the_slot_a_server_is_running_is_never_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for version in ("1.0.0", "1.1.0"):
        _install(data, fake_bundle(tmp_path, version))
    slots = SlotStore(data / "bundles")
    # slot-b (active) failed to load; the server fell back to slot-a and says so.
    slots.mark_serving("slot-a", "1.0.0", fallback_from="slot-b")
    steps: list[str] = []
    assert _install(data, fake_bundle(tmp_path, "1.2.0"), hook=steps.append) == "slot-b"
    assert steps[:2] == ["unpacked", "fallback-adopted"]
    state = slots.state()
    assert (state.active, state.previous) == ("slot-b", "slot-a")
    assert slots.version("slot-a") == "1.0.0"
    slots.mark_serving("slot-b", "1.2.0")  # normal again: the inactive slot is replaced
    assert _install(data, fake_bundle(tmp_path, "1.3.0")) == "slot-a"
    # A stale note from a stopped server does not undo an operator's rollback.
    slots.rollback()  # active slot-b (1.2.0), previous slot-a (1.3.0) held back
    assert _install(data, fake_bundle(tmp_path, "1.4.0")) == "slot-a"
    assert slots.status()["previous_version"] == "1.2.0"
