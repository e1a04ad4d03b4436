"""Session fixtures: real bundles built once from the cached tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.updates.helpers import RealBundles


@pytest.fixture(scope="session")
def real_bundles(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> RealBundles:
    """Archives 1.0.0 and 1.1.0 of the tiny model + starter-KB index (built once)."""
    from training.demo_bundle import ensure_demo_bundle

    bundles = RealBundles(
        tmp_path_factory.mktemp("real-bundles"), {}, ensure_demo_bundle(cache_dir)
    )
    for version in ("1.0.0", "1.1.0"):
        bundles.archives[version] = bundles.build(version)
    return bundles
