"""``skinspector evaluate``: generate for a whole split with fixed seeds, then score.

The model is a Hugging Face folder (a merged model, or a training checkpoint: base +
adapter), run with transformers, or a GGUF export folder, run by the llama.cpp engine the
clinic box uses. Both see the same prompt (``skinspector.core.prompt``), the same image
preparation and the same sampling defaults; example ``i`` of the split always uses seed
``seed + i``, so two models evaluated on the same split are paired example by example
(the quantization ablation compares them that way).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skinspector.core.errors import InputError
from skinspector.core.prompt import PROMPT_VERSION
from skinspector.core.settings import SamplingSettings
from training.data import (
    Example,
    default_split_file,
    ensure_split,
    load_skincap,
    select,
)

__all__ = ["EvalRun", "ModelKind", "detect_model_kind", "evaluate_model", "generate_split"]

log = logging.getLogger(__name__)

ModelKind = Literal["hf", "adapter", "gguf"]
Generator = Callable[[Example, int], str]


@dataclass(frozen=True, slots=True)
class EvalRun:
    out_dir: Path
    records: list[dict[str, Any]]
    metrics: Any  # training.metrics.MetricTable


def detect_model_kind(model_dir: Path) -> ModelKind:
    if not model_dir.is_dir():
        raise InputError(f"model folder not found: {model_dir}")
    if (model_dir / "adapter_config.json").is_file():
        return "adapter"
    if (model_dir / "config.json").is_file():
        return "hf"
    if any(model_dir.glob("*.gguf")):
        return "gguf"
    raise InputError(
        f"{model_dir} is neither a Hugging Face model folder (config.json), a training "
        "checkpoint (adapter_config.json) nor a GGUF export (*.gguf)"
    )


@contextmanager
def _hf_generator(
    model_dir: Path,
    kind: ModelKind,
    *,
    min_pixels: int,
    max_pixels: int,
    max_new_tokens: int,
    sampling: SamplingSettings,
) -> Iterator[Generator]:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from training.vlm import generate_hf, load_image, load_processor, render_prompt

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    if kind == "adapter":
        from peft import PeftModel

        state = json.loads((model_dir / "trainer_state.json").read_text())
        base = Qwen2_5_VLForConditionalGeneration.from_pretrained(state["base_model"], dtype=dtype)
        model: Any = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=dtype)
    if cuda:
        model = model.to("cuda")
    model.eval()
    processor = load_processor(model_dir, min_pixels=min_pixels, max_pixels=max_pixels)
    prompt = render_prompt(processor.tokenizer)

    def generate(example: Example, seed: int) -> str:
        image = load_image(example.image, min_pixels=min_pixels, max_pixels=max_pixels)
        return generate_hf(
            model,
            processor,
            prompt,
            image,
            seed=seed,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
        )

    yield generate


@contextmanager
def _gguf_generator(
    model_dir: Path,
    *,
    min_pixels: int,
    max_pixels: int,
    max_new_tokens: int,
    sampling: SamplingSettings,
    n_threads: int | None,
) -> Iterator[Generator]:
    from skinspector.core.engine import VisionLanguageModel
    from skinspector.core.imaging import prepare_image
    from skinspector.core.settings import EngineSettings, ImageSettings
    from training.export import read_export
    from training.vlm import training_context

    model_path, mmproj_path = read_export(model_dir)
    settings = EngineSettings(n_threads=n_threads)
    images = ImageSettings(min_pixels=min_pixels, max_pixels=max_pixels)
    with VisionLanguageModel(model_path, mmproj_path, settings) as engine:

        def generate(example: Example, seed: int) -> str:
            prepared = prepare_image(example.image.read_bytes(), images)
            per_example = sampling.model_copy(update={"seed": seed, "max_tokens": max_new_tokens})
            return engine.generate(prepared, training_context(), sampling=per_example).text.strip()

        yield generate


def generate_split(
    model_dir: Path,
    examples: list[Example],
    *,
    seed: int = 42,
    max_new_tokens: int = 256,
    min_pixels: int = 256 * 28 * 28,
    max_pixels: int = 512 * 28 * 28,
    sampling: SamplingSettings | None = None,
    n_threads: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One record per example (the ``generations.jsonl`` shape) with seed ``seed + i``."""
    from tqdm import tqdm

    sampling = sampling or SamplingSettings()
    kind = detect_model_kind(model_dir)
    if kind == "gguf":
        context = _gguf_generator(
            model_dir,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            n_threads=n_threads,
        )
    else:
        context = _hf_generator(
            model_dir,
            kind,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
        )
    records = []
    with context as generate:
        for index, example in enumerate(
            tqdm(examples, desc=f"generating ({kind})", unit="image", disable=not progress)
        ):
            example_seed = seed + index
            records.append(
                {
                    "id": example.id,
                    "image": str(example.image),
                    "reference": example.caption,
                    "disease": example.disease,
                    "prediction": generate(example, example_seed),
                    "seed": example_seed,
                    "step": None,
                }
            )
    return records


def evaluate_model(
    model_dir: Path,
    data_dir: Path,
    out_dir: Path,
    *,
    split: str = "eval",
    split_file: Path | None = None,
    limit: int | None = None,
    seed: int = 42,
    max_new_tokens: int = 256,
    min_pixels: int = 256 * 28 * 28,
    max_pixels: int = 512 * 28 * 28,
    metric_config: Any = None,
    n_threads: int | None = None,
    progress: bool = True,
) -> EvalRun:
    """Generate for ``split`` of the data, score it and write ``out_dir``."""
    from training.metrics import compute_metrics

    kind = detect_model_kind(model_dir)  # before loading data: a wrong folder fails at once
    examples, report = load_skincap(data_dir)
    split_path = split_file or default_split_file(data_dir)
    chosen = select(examples, ensure_split(examples, split_path).ids(split))
    if limit is not None:
        chosen = chosen[:limit]
    records = generate_split(
        model_dir,
        chosen,
        seed=seed,
        max_new_tokens=max_new_tokens,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        n_threads=n_threads,
        progress=progress,
    )
    table = compute_metrics(
        [r["prediction"] for r in records],
        [r["reference"] for r in records],
        [r["disease"] for r in records],
        config=metric_config,
        progress=progress,
    )
    metadata = {
        "model": str(model_dir.resolve()),
        "model_kind": kind,
        "data_dir": str(data_dir.resolve()),
        "split": split,
        "split_file": str(split_path.resolve()),
        "examples": len(records),
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "prompt_version": PROMPT_VERSION,
        "data_report": report.to_json(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    table.write(out_dir, records, metadata)
    return EvalRun(out_dir=out_dir, records=records, metrics=table)
