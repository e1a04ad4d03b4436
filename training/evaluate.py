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
from skinspector.core.prompt import prompt_spec
from skinspector.core.settings import SamplingSettings
from training.data import (
    Example,
    Split,
    default_split_file,
    ensure_split,
    load_skincap,
    select,
)

__all__ = [
    "EvalRun",
    "ModelKind",
    "TrainedSplit",
    "detect_model_kind",
    "evaluate_model",
    "generate_split",
    "trained_split",
]

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


@dataclass(frozen=True, slots=True)
class TrainedSplit:
    """The split a model was trained with, as its own files record it."""

    split_file: Path
    sha256: str | None
    recorded_in: Path


def _provenance_file(
    model_dir: Path, kind: ModelKind, key: str = "split_file"
) -> tuple[Path, dict[str, Any]] | None:
    """The first of the model's own records (checkpoint state, run record, merge.json,
    export.json) that carries ``key``, with its content."""
    candidates = {
        "adapter": [model_dir / "trainer_state.json", model_dir.parent / "run.json"],
        "hf": [model_dir / "merge.json"],
        "gguf": [model_dir / "export.json"],
    }[kind]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is not readable JSON: {exc}") from exc
        if kind == "gguf":
            record = record.get("provenance") or {}
        if isinstance(record, dict) and record.get(key):
            return path, record
    return None


def trained_split(model_dir: Path, kind: ModelKind | None = None) -> TrainedSplit | None:
    """Where a checkpoint, merged model or GGUF export says its training split is (None for
    a model this project did not train, or one trained before splits were recorded)."""
    found = _provenance_file(model_dir, kind or detect_model_kind(model_dir))
    if found is None:
        return None
    path, record = found
    return TrainedSplit(Path(record["split_file"]), record.get("split_sha256"), path)


def _held_out_ids(
    trained: TrainedSplit | None,
    split_file: Path | None,
    data_dir: Path,
    split: str,
    examples: list[Example],
) -> tuple[list[str], Path]:
    """The ids to score, and the split file they come from; refuses training examples."""
    if trained is None:
        log.warning(
            "the model records no training split: evaluating the %r split of %s without "
            "checking that the model never saw it",
            split,
            split_file or default_split_file(data_dir),
        )
        path = split_file or default_split_file(data_dir)
        return list(ensure_split(examples, path).ids(split)), path
    if not trained.split_file.is_file():
        raise InputError(
            f"the split this model was trained with ({trained.split_file}, named in "
            f"{trained.recorded_in}) is missing: restore it, so that evaluation can make sure "
            "it scores no training example"
        )
    training = Split.read(trained.split_file)
    if trained.sha256 and training.digest() != trained.sha256:
        raise InputError(
            f"{trained.split_file} has changed since the model was trained (sha256 "
            f"{training.digest()[:12]} != {trained.sha256[:12]}): evaluation cannot tell which "
            "examples the model was trained on"
        )
    path = split_file or trained.split_file
    chosen = Split.read(path) if split_file else training
    ids = list(chosen.ids(split))
    seen = [example_id for example_id in ids if example_id in set(training.train)]
    if seen:
        raise InputError(
            f"refusing to score {len(seen)} example(s) of the {split!r} split of {path.name} "
            f"that the model was trained on (first: {seen[0]}); evaluate the 'test' split "
            "(or 'eval' for checkpoint selection)"
        )
    return ids, path


def _check_prompt_version(model_dir: Path, kind: ModelKind, name: str, allow: bool) -> None:
    """Refuse (or, with ``allow``, warn about) a model trained on another version of the
    prompt it is scored with: its numbers would describe a prompt the server no longer sends."""
    found = _provenance_file(model_dir, kind, key="prompts")
    if found is None:
        return
    path, record = found
    trained = (record.get("prompts") or {}).get(name)
    current = prompt_spec(name).version
    if trained == current:
        return
    message = (
        f"{model_dir} was trained on the {name!r} prompt version {trained or 'none'} "
        f"({path.name}), but the server now sends version {current}"
    )
    if not allow:
        raise InputError(message + "; retrain, or pass --allow-prompt-mismatch to score anyway")
    log.warning("%s; scoring anyway (--allow-prompt-mismatch)", message)


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

    from training.vlm import CAPTION_PROMPT, generate_hf, load_image, load_processor, render_prompt

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
    prompt = render_prompt(processor.tokenizer, prompt=CAPTION_PROMPT)

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
    from skinspector.core.prompt import prompt_messages
    from skinspector.core.settings import EngineSettings, ImageSettings
    from training.export import read_export
    from training.vlm import CAPTION_PROMPT, training_context

    model_path, mmproj_path = read_export(model_dir)
    settings = EngineSettings(n_threads=n_threads)
    images = ImageSettings(min_pixels=min_pixels, max_pixels=max_pixels)
    with VisionLanguageModel(model_path, mmproj_path, settings) as engine:

        def generate(example: Example, seed: int) -> str:
            prepared = prepare_image(example.image.read_bytes(), images)
            per_example = sampling.model_copy(update={"seed": seed, "max_tokens": max_new_tokens})
            # Exactly the messages the clinic server's pass 1 sends for a photo.
            messages = prompt_messages(CAPTION_PROMPT, [prepared.data_uri()], training_context())
            return engine.complete(messages, sampling=per_example).text.strip()

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
    split: str = "test",
    split_file: Path | None = None,
    limit: int | None = None,
    seed: int = 42,
    max_new_tokens: int = 256,
    min_pixels: int = 256 * 28 * 28,
    max_pixels: int = 512 * 28 * 28,
    metric_config: Any = None,
    n_threads: int | None = None,
    progress: bool = True,
    allow_prompt_mismatch: bool = False,
) -> EvalRun:
    """Generate for ``split`` of the data, score it and write ``out_dir``.

    The split comes from the model's own record of the split it was trained with (a
    checkpoint's state, a merged model's ``merge.json``, an export's ``export.json``);
    ``split_file`` overrides it, and no example of the model's training split is scored.
    """
    from training.metrics import compute_metrics
    from training.vlm import CAPTION_PROMPT

    kind = detect_model_kind(model_dir)  # before loading data: a wrong folder fails at once
    _check_prompt_version(model_dir, kind, CAPTION_PROMPT, allow_prompt_mismatch)
    trained = trained_split(model_dir, kind)
    examples, report = load_skincap(data_dir)
    ids, split_path = _held_out_ids(trained, split_file, data_dir, split, examples)
    chosen = select(examples, ids)
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
        "trained_split_checked": trained is not None,
        "examples": len(records),
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "prompt": CAPTION_PROMPT,
        "prompt_version": prompt_spec(CAPTION_PROMPT).version,
        "data_report": report.to_json(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    table.write(out_dir, records, metadata)
    return EvalRun(out_dir=out_dir, records=records, metrics=table)
