"""A bundle's manifest can carry pass limits: defaults under settings set explicitly."""

from __future__ import annotations

from pathlib import Path

from edge_server.bundle import ActiveBundle, effective_analysis
from edge_server.settings import AnalysisSettings, EdgeSettings
from skinspector.core.bundle_manifest import BundleManifest, PassLimits


def _bundle(tmp_path: Path, limits: PassLimits | None) -> ActiveBundle:
    manifest = BundleManifest(
        version="1.0.0", model_id="m", model="m.gguf", mmproj="p.gguf", limits=limits
    )
    manifest.write(tmp_path)
    return ActiveBundle.open(tmp_path)


def test_bundle_limits_are_defaults_that_explicit_settings_override(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, PassLimits(findings_max_tokens=48, report_max_tokens=96))
    assert BundleManifest.read(tmp_path).limits == bundle.manifest.limits  # round trip
    defaults = effective_analysis(bundle, AnalysisSettings())
    assert (defaults.findings_max_tokens, defaults.report_max_tokens) == (48, 96)
    assert defaults.references == AnalysisSettings().references
    configured = EdgeSettings(server={"analysis": {"report_max_tokens": 640}}).server.analysis
    mixed = effective_analysis(bundle, configured)
    assert (mixed.findings_max_tokens, mixed.report_max_tokens) == (48, 640)


def test_no_limits_in_the_manifest_keeps_the_settings(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, None)
    assert effective_analysis(bundle, AnalysisSettings()) == AnalysisSettings()


def test_the_demo_bundle_carries_short_pass_limits(cache_dir: Path) -> None:
    from training.demo_bundle import DEMO_LIMITS, ensure_demo_bundle

    manifest = BundleManifest.read(ensure_demo_bundle(cache_dir))
    assert manifest.demo
    assert manifest.limits == PassLimits(**DEMO_LIMITS)
