"""The edge server's two-pass analysis runs the vision encoder once per photo and case
(real tiny model, real demo bundle and retriever)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from skinspector.core.case_schema import ClinicalContext
from skinspector.core.engine import VisionLanguageModel
from skinspector.core.samples import lesion_photo
from skinspector.core.settings import EngineSettings, ImageSettings, SamplingSettings

pytestmark = pytest.mark.slow


def test_second_pass_does_not_reencode_the_photos(cache_dir: Path) -> None:
    from edge_server.analysis import Analyzer
    from edge_server.bundle import ActiveBundle
    from edge_server.safety.quality import QualitySettings
    from edge_server.safety.rule_file import load_rules
    from edge_server.settings import AnalysisSettings
    from kb_builder.retriever import HybridRetriever
    from training.demo_bundle import ensure_demo_bundle

    bundle = ActiveBundle.open(ensure_demo_bundle(cache_dir))
    assert bundle.index is not None
    retriever = HybridRetriever(bundle.index)
    with VisionLanguageModel(bundle.model, bundle.mmproj, EngineSettings(n_ctx=4096)) as vlm:
        analyzer = Analyzer(
            vlm,
            retriever,
            bundle,
            sampling=SamplingSettings(seed=7),
            analysis=AnalysisSettings(findings_max_tokens=8, report_max_tokens=16, references=2),
            quality=QualitySettings(),
            image=ImageSettings(),
            rules=load_rules(),
        )
        try:
            context = ClinicalContext(body_site="forearm")
            for photos in (1, 2):
                events: list[dict[str, object]] = []
                before = vlm.encoder_runs
                outcome = asyncio.run(
                    analyzer.analyse(
                        context,
                        [lesion_photo(1024, 768, seed=s) for s in range(photos)],
                        events.append,
                    )
                )
                assert not outcome.rejected
                # Both passes ran (and pass 2 had its references) ...
                phases = [e["phase"] for e in events if e["type"] == "phase"]
                assert phases == ["findings", "retrieval", "report"]
                assert outcome.result["audit"]["report_tokens"] > 0
                assert outcome.result["references"]
                # ... yet each photo went through the vision encoder once.
                assert vlm.encoder_runs - before == photos
        finally:
            analyzer.close()
