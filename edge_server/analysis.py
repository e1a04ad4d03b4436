"""The two-pass grounded analysis of one case, wrapped in the safety layer.

quality gate -> pass 1 (visible findings) -> red-flag rules on metadata + findings ->
retrieval (findings + notes) -> pass 2 (structured assessment citing the references) ->
parse -> rules raise the action (never lower it) -> an auditable result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from edge_server.bundle import DEMO_WARNING, ActiveBundle
from edge_server.metrics import Metrics
from edge_server.safety.quality import QualitySettings, check_quality
from edge_server.safety.red_flags import RedFlagRule, apply_safety, evaluate_red_flags
from edge_server.settings import AnalysisSettings
from kb_builder.retriever import Hit, HybridRetriever
from skinspector.core.case_schema import ClinicalContext
from skinspector.core.engine import Generation, ImageCache, VisionLanguageModel
from skinspector.core.imaging import PreparedImage, prepare_image
from skinspector.core.prompt import (
    DISCLAIMERS,
    PROMPT_VERSION,
    Reference,
    cited_references,
    parse_assessment,
    prompt_messages,
)
from skinspector.core.settings import ImageSettings, SamplingSettings

__all__ = ["ASSESSMENT_PROMPT", "FINDINGS_PROMPT", "AnalysisOutcome", "Analyzer", "retrieval_query"]

#: The registered prompts (``skinspector.core.prompt.PROMPTS``) of the two passes: pass 1
#: asks what SkinCAP captions are trained on, pass 2 the grounded assessment.
FINDINGS_PROMPT = "findings"
ASSESSMENT_PROMPT = "assessment"

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class AnalysisOutcome:
    rejected: bool  # True when the quality gate refused every photo
    result: dict[str, Any]


def retrieval_query(findings: str, context: ClinicalContext) -> str:
    """Pass-1 findings plus what the health worker told us."""
    parts = [findings.strip()]
    if context.body_site:
        parts.append(context.body_site)
    if context.symptoms:
        parts.append(", ".join(context.symptoms))
    if context.notes:
        parts.append(context.notes)
    return "\n".join(p for p in parts if p)


class Analyzer:
    """Runs analyses on the shared model; retrieval runs on its own single thread (its
    llama.cpp embedder is a separate model and must not be called concurrently)."""

    def __init__(
        self,
        vlm: VisionLanguageModel,
        retriever: HybridRetriever | None,
        bundle: ActiveBundle,
        *,
        sampling: SamplingSettings,
        analysis: AnalysisSettings,
        quality: QualitySettings,
        image: ImageSettings,
        rules: Sequence[RedFlagRule],
        metrics: Metrics | None = None,
    ) -> None:
        self.vlm = vlm
        self.retriever = retriever
        self.bundle = bundle
        self.sampling = sampling
        self.analysis = analysis
        self.quality = quality
        self.image = image
        self.rules = list(rules)
        self.metrics = metrics
        self._retrieval = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieval")

    def close(self) -> None:
        self._retrieval.shutdown(wait=True)

    async def _generate(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int,
        kind: str,
        emit: Emit,
        images: ImageCache,
    ) -> tuple[str, float, int]:
        """One pass, streamed as token events. ``images`` carries the photos' embeddings
        from pass 1 to pass 2, so the vision encoder runs once per photo and case."""
        sampling = self.sampling.model_copy(update={"max_tokens": max_tokens})
        started = time.perf_counter()
        pieces: list[str] = []
        results: list[Generation] = []
        async for piece in self.vlm.astream(messages, sampling, results.append, image_cache=images):
            pieces.append(piece)
            emit({"type": "token", "pass": kind, "text": piece})
        seconds = time.perf_counter() - started
        tokens = results[0].completion_tokens if results else len(pieces)
        if self.metrics is not None:
            self.metrics.observe_generation(kind, seconds, tokens)
        return "".join(pieces), seconds, tokens

    async def _search(self, query: str) -> list[Hit]:
        if self.retriever is None or self.analysis.references == 0:
            return []
        loop = asyncio.get_running_loop()
        retriever = self.retriever
        return await loop.run_in_executor(
            self._retrieval, lambda: retriever.search(query, self.analysis.references)
        )

    async def analyse(
        self, context: ClinicalContext, photos: Sequence[bytes], emit: Emit
    ) -> AnalysisOutcome:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        prepared: list[PreparedImage] = await asyncio.to_thread(
            lambda: [prepare_image(photo, self.image) for photo in photos]
        )
        quality = []
        usable: list[tuple[int, PreparedImage]] = []
        for index, image in enumerate(prepared):
            issues = check_quality(image, self.quality)
            quality += [
                {
                    "photo": index,
                    "code": issue.code,
                    "measured": issue.measured,
                    "limit": issue.limit,
                    "message": issue.message[context.language],
                }
                for issue in issues
            ]
            if not issues:
                usable.append((index, image))
        timings["quality_s"] = time.perf_counter() - started
        audit: dict[str, Any] = {
            "bundle_version": self.bundle.version,
            "model_id": self.bundle.manifest.model_id,
            "demo": self.bundle.demo,
            "intended_use": self.bundle.intended_use,
            "prompt_version": PROMPT_VERSION,
            "sampling": self.sampling.model_dump(),
            "photos_used": [index for index, _ in usable],
        }
        base: dict[str, Any] = {"quality": quality, "audit": audit}
        if self.bundle.demo:
            base["demo_warning"] = DEMO_WARNING
        if not usable:
            timings["total_s"] = time.perf_counter() - started
            audit["timings"] = timings
            base["disclaimer"] = DISCLAIMERS[context.language]
            return AnalysisOutcome(rejected=True, result=base)

        uris = [image.data_uri() for _, image in usable]
        images = ImageCache(max_images=max(1, len(usable)))  # this case's photos only
        emit({"type": "phase", "phase": "findings"})
        findings, seconds, tokens = await self._generate(
            prompt_messages(FINDINGS_PROMPT, uris, context),
            self.analysis.findings_max_tokens,
            "findings",
            emit,
            images,
        )
        timings["findings_s"], audit["findings_tokens"] = seconds, tokens
        flags = evaluate_red_flags(self.rules, context, findings)

        emit({"type": "phase", "phase": "retrieval"})
        query = retrieval_query(findings, context)
        t = time.perf_counter()
        hits = await self._search(query)
        timings["retrieval_s"] = time.perf_counter() - t
        references = [
            Reference(title=h.heading or h.title, text=h.text, source=h.source) for h in hits
        ]

        emit({"type": "phase", "phase": "report"})
        report, seconds, tokens = await self._generate(
            prompt_messages(ASSESSMENT_PROMPT, uris, context, references),
            self.analysis.report_max_tokens,
            "report",
            emit,
            images,
        )
        timings["report_s"], audit["report_tokens"] = seconds, tokens
        assessment = apply_safety(parse_assessment(report, context.language), flags)
        cited = cited_references(report, len(references))
        timings["total_s"] = time.perf_counter() - started
        audit["timings"] = timings
        audit["retrieval_query_chars"] = len(query)
        result = {
            **base,
            "assessment": assessment.model_dump(mode="json"),
            "findings": findings,
            "red_flag_rules": [flag.rule_id for flag in flags],
            "references": [
                {
                    "number": n,
                    "chunk_id": h.chunk_id,
                    "source": h.source,
                    "title": h.title,
                    "heading": h.heading,
                    "page": h.page,
                    "text": h.text,
                    "score": round(h.score, 6),
                    "semantic": round(h.semantic, 6),
                    "lexical": round(h.lexical, 6),
                    "cosine": round(h.cosine, 6),
                    "cited": n in cited,
                }
                for n, h in enumerate(hits, start=1)
            ],
            "cited": cited,
        }
        return AnalysisOutcome(rejected=False, result=result)
