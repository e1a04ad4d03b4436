"""The smoke test a new bundle must pass before it becomes active.

Load the language model and vision projector, describe one synthetic lesion photo in a
few tokens, open the knowledge-base index and run one retrieval. By default it runs in a
child process (``python -m updates.smoke BUNDLE_DIR``): a bundle that crashes
llama.cpp or exhausts memory kills the child, never the updater or the running server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from skinspector.core.bundle_manifest import BundleManifest
from updates.errors import SmokeTestError

__all__ = ["SmokeReport", "run_smoke_test", "subprocess_smoke_test"]

SMOKE_QUERY = "itchy red scaly patch on the forearm"


@dataclass(frozen=True, slots=True)
class SmokeReport:
    version: str
    generated_tokens: int
    retrieved: int
    chunks: int


def run_smoke_test(bundle_dir: Path, *, n_threads: int | None = None) -> SmokeReport:
    """In this process. Raises :class:`SmokeTestError` on any failure."""
    from kb_builder.retriever import HybridRetriever
    from skinspector.core.engine import VisionLanguageModel
    from skinspector.core.imaging import prepare_image
    from skinspector.core.samples import lesion_photo
    from skinspector.core.settings import EngineSettings, SamplingSettings

    try:
        manifest = BundleManifest.read(bundle_dir)
        engine = EngineSettings(n_ctx=2048, n_threads=n_threads)
        with VisionLanguageModel(
            bundle_dir / manifest.model, bundle_dir / manifest.mmproj, engine
        ) as vlm:
            image = prepare_image(lesion_photo(448, 448, seed=3, with_gps=False))
            generation = vlm.generate(image, sampling=SamplingSettings(max_tokens=4, seed=0))
        if generation.completion_tokens < 1:
            raise SmokeTestError("the model generated no token")
        retrieved = chunks = 0
        if manifest.index is not None:
            retriever = HybridRetriever(bundle_dir / manifest.index)
            try:
                chunks = len(retriever)
                retrieved = len(retriever.search(SMOKE_QUERY, k=3))
            finally:
                close = getattr(retriever.embedder, "close", None)
                if callable(close):
                    close()
            if chunks == 0:
                raise SmokeTestError("the knowledge-base index is empty")
    except SmokeTestError:
        raise
    except Exception as exc:
        raise SmokeTestError(f"{type(exc).__name__}: {exc}") from exc
    return SmokeReport(manifest.version, generation.completion_tokens, retrieved, chunks)


def subprocess_smoke_test(bundle_dir: Path, *, timeout: float = 900.0) -> SmokeReport:
    """:func:`run_smoke_test` in a child process."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "updates.smoke", str(bundle_dir)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeTestError(f"the smoke test did not finish within {timeout:.0f} s") from exc
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = done.stderr.decode(errors="replace").strip().splitlines()
        reason = (lines or errors or [f"exit status {done.returncode}"])[-1]
        raise SmokeTestError(f"the smoke test failed: {reason[:500]}")
    try:
        return SmokeReport(**json.loads(lines[-1]))
    except (ValueError, TypeError) as exc:
        raise SmokeTestError(f"the smoke test printed no report: {lines[-1][:200]}") from exc


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m updates.smoke BUNDLE_DIR", file=sys.stderr)
        return 2
    try:
        report = run_smoke_test(Path(argv[0]))
    except SmokeTestError as exc:
        print(f"FAILED: {exc}")
        return 1
    print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
