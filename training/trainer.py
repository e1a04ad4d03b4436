"""DoRA/QLoRA fine-tuning of Qwen2.5-VL on SkinCAP: a small, explicit training loop.

An explicit loop rather than ``transformers.Trainer`` so that every piece the seed project
got wrong is visible and tested: the loss covers only the answer (``vlm.encode_example``),
the prompt is the engine's (``vlm.render_prompt``), evaluation generates with the
generation prompt and fixed seeds, and a resumed run continues exactly where it stopped
(optimizer, scheduler, data order and every random generator are restored).

The run directory (the contract with ``skinspector report`` and ``review-checkpoints``) is
described in :mod:`training.run_dir`; the model, adapter and optimizer are built in
:mod:`training.model_setup`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinspector.core.prompt import prompt_spec
from skinspector.core.storage import fsync_dir, write_atomic
from training.assessment_targets import AssessmentTargets
from training.config import TrainConfig
from training.data import (
    Example,
    Split,
    default_split_file,
    ensure_split,
    load_skincap,
    select,
)
from training.model_setup import (
    Features,
    build_model,
    make_optimizer,
    make_scheduler,
    resolve_features,
)
from training.rng import rng_state, seed_everything, set_rng_state
from training.run_dir import (
    CHECKPOINT_PREFIX,
    LOG_FILE,
    METRICS_FILE,
    STATE_FILE,
    TENSOR_STATE_FILE,
    RunError,
    append_jsonl,
    checkpoints,
    latest_checkpoint,
    prepare_run_dir,
    trained_prompts,
    truncate_jsonl,
    write_run_record,
)
from training.vlm import (
    ASSESSMENT_PROMPT,
    CAPTION_PROMPT,
    EncodedExample,
    collate,
    encode_example,
    generate_hf,
    load_image,
    load_processor,
    render_prompt,
)

__all__ = [
    "CHECKPOINT_PREFIX",
    "Features",
    "RunError",
    "TrainResult",
    "checkpoints",
    "latest_checkpoint",
    "resolve_features",
    "train",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TrainResult:
    run_dir: Path
    step: int
    checkpoints: list[Path] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)


class _Batches:
    """Deterministic micro-batches: epoch e visits the train ids shuffled with seed + e."""

    def __init__(self, ids: Sequence[str], batch_size: int, seed: int) -> None:
        self.ids = list(ids)
        self.batch_size = batch_size
        self.seed = seed
        self._orders: dict[int, list[str]] = {}

    def _order(self, epoch: int) -> list[str]:
        if epoch not in self._orders:
            order = list(self.ids)
            random.Random(self.seed + epoch).shuffle(order)  # noqa: S311 - data order
            self._orders = {epoch: order}
        return self._orders[epoch]

    def micro_batch(self, index: int) -> tuple[list[str], float]:
        """Ids of micro-batch ``index`` (0-based over the whole run) and its epoch."""
        start = index * self.batch_size
        ids = []
        for position in range(start, start + self.batch_size):
            epoch, offset = divmod(position, len(self.ids))
            ids.append(self._order(epoch)[offset])
        return ids, start / len(self.ids)


@dataclass(slots=True)
class _Context:
    config: TrainConfig
    run_dir: Path
    processor: Any
    prompt: str  # the findings prompt, rendered: what captions train and evaluation scores
    examples: dict[str, Example]
    split: Split
    split_file: Path
    features: Features
    say: Callable[[str], None]
    cache: dict[str, EncodedExample] = field(default_factory=dict)
    metric_suite: Any = None
    assessment_prompt: str = ""
    targets: AssessmentTargets | None = None

    def assessment_target(self, example: Example) -> str | None:
        """The synthesized pass-2 target when this example trains the assessment task."""
        ratio = self.config.tasks.assessment_ratio
        if self.targets is None or ratio <= 0:
            return None
        draw = hashlib.sha256(f"{self.config.seed}:{example.id}".encode()).digest()
        if int.from_bytes(draw[:4], "big") / 2**32 >= ratio:
            return None
        return self.targets.target(example.caption, example.disease)

    def encode(self, example_id: str) -> EncodedExample:
        if example_id not in self.cache:
            example = self.examples[example_id]
            image = load_image(
                example.image,
                min_pixels=self.config.data.min_pixels,
                max_pixels=self.config.data.max_pixels,
            )
            target = self.assessment_target(example)
            if target is None:
                encoded = encode_example(self.processor, self.prompt, image, example.caption)
            else:
                encoded = encode_example(self.processor, self.assessment_prompt, image, target)
            if encoded.input_ids.shape[0] > self.config.data.max_length:
                raise RunError(
                    f"example {example_id} is {encoded.input_ids.shape[0]} tokens, over "
                    f"data.max_length={self.config.data.max_length}: lower data.max_pixels "
                    "or raise data.max_length"
                )
            if len(self.cache) < 4096:
                self.cache[example_id] = encoded
            return encoded
        return self.cache[example_id]


def _model_inputs(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {key: value.to(device) for key, value in batch.items()}


def accumulate_gradients(
    model: Any,
    micro_batches: Sequence[Sequence[EncodedExample]],
    pad: int,
    device: str,
    *,
    bf16: bool = False,
) -> float:
    """Backpropagate one optimizer step's micro-batches, each weighted by its share of the
    step's answer tokens, so that accumulating 8 micro-batches of 1 computes the gradient
    of one batch of 8 (the model's loss is a mean over a batch's answer tokens). Returns the
    step's token-weighted mean loss. With ``bf16`` (CUDA) the forward pass runs under bf16
    autocast: after ``prepare_model_for_kbit_training`` the non-quantized layers are fp32,
    and computing their activations in fp32 would cost the memory the report's figure
    assumes is saved."""
    import torch

    counts = [sum(example.loss_tokens for example in batch) for batch in micro_batches]
    total = sum(counts)
    if total == 0:
        raise RunError("this step's examples have no answer tokens to learn from")
    step_loss = 0.0
    for examples, count in zip(micro_batches, counts, strict=True):
        if count == 0:
            continue
        batch = collate(list(examples), pad)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**_model_inputs(batch, device)).loss
        weight = count / total
        (loss * weight).backward()
        step_loss += float(loss.detach()) * weight
    return step_loss


def _eval_loss(ctx: _Context, model: Any) -> float:
    import torch

    ids = ctx.split.eval[: ctx.config.eval.loss_examples]
    pad = ctx.processor.tokenizer.pad_token_id or 0
    total = 0.0
    model.eval()
    with torch.no_grad():
        for example_id in ids:
            batch = collate([ctx.encode(example_id)], pad)
            total += float(model(**_model_inputs(batch, ctx.features.device)).loss)
    model.train()
    return total / len(ids)


def _generate_sample(ctx: _Context, model: Any, step: int) -> list[dict[str, Any]]:
    """Answers for the fixed eval sample: example i always uses seed config.seed + i."""
    model.eval()
    model.config.use_cache = True
    records = []
    sample = select(list(ctx.examples.values()), ctx.split.eval[: ctx.config.eval.sample_size])
    for index, example in enumerate(sample):
        image = load_image(
            example.image,
            min_pixels=ctx.config.data.min_pixels,
            max_pixels=ctx.config.data.max_pixels,
        )
        seed = ctx.config.seed + index
        prediction = generate_hf(
            model,
            ctx.processor,
            ctx.prompt,
            image,
            seed=seed,
            max_new_tokens=ctx.config.eval.max_new_tokens,
            sampling=ctx.config.eval.sampling,
        )
        records.append(
            {
                "id": example.id,
                "image": str(example.image),
                "reference": example.caption,
                "disease": example.disease,
                "prediction": prediction,
                "seed": seed,
                "step": step,
            }
        )
    model.config.use_cache = False
    model.train()
    return records


def _score(ctx: _Context, records: list[dict[str, Any]]) -> Any:
    """The metric table of the generations (one metric suite for the whole run)."""
    from training import metrics
    from training.wordnet import missing_wordnet_files

    if ctx.metric_suite is None:
        meteor = ctx.config.eval.meteor
        if meteor and missing_wordnet_files():
            ctx.say("METEOR skipped: WordNet is not installed (apt-get install wordnet-base)")
            meteor = False
        ctx.metric_suite = metrics.MetricSuite(
            metrics.MetricConfig(bertscore=ctx.config.eval.bertscore, meteor=meteor)
        )
    return metrics.compute_metrics(
        [r["prediction"] for r in records],
        [r["reference"] for r in records],
        [r["disease"] for r in records],
        suite=ctx.metric_suite,
    )


def _save_checkpoint(
    ctx: _Context,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    epoch: float,
    records: list[dict[str, Any]],
    table: Any,
) -> Path:
    import torch

    final = ctx.run_dir / f"{CHECKPOINT_PREFIX}{step}"
    staging = ctx.run_dir / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model.save_pretrained(str(staging))
    ctx.processor.tokenizer.save_pretrained(str(staging))
    ctx.processor.image_processor.save_pretrained(str(staging))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
        },
        staging / TENSOR_STATE_FILE,
    )
    # generations.jsonl, metrics.json, metrics.csv and scores.jsonl (per-example scores,
    # so that `skinspector compare-evals` pairs checkpoints too).
    table.write(staging, records, {"step": step}, predictions_name="generations.jsonl")
    state = {
        "step": step,
        "epoch": epoch,
        "base_model": ctx.config.base_model,
        "prompt": CAPTION_PROMPT,
        "prompt_version": prompt_spec(CAPTION_PROMPT).version,
        "prompts": trained_prompts(ctx.config),
        # The split this model was trained with: evaluation reads it back and refuses to
        # score an example the model was trained on.
        "split_file": str(ctx.split_file.resolve()),
        "split_sha256": ctx.split.digest(),
        "config": ctx.config.to_json(),
        "features": ctx.features.to_json(),
        "hyperparameters": {
            "lr": ctx.config.optim.lr,
            "current_lr": scheduler.get_last_lr()[0],
            "weight_decay": ctx.config.optim.weight_decay,
            "r": ctx.config.adapter.r,
            "alpha": ctx.config.adapter.alpha,
            "dropout": ctx.config.adapter.dropout,
            "method": ctx.config.adapter.method,
            "batch_size": ctx.config.batch_size,
            "grad_accum": ctx.config.grad_accum,
        },
    }
    write_atomic(staging / STATE_FILE, json.dumps(state, indent=1).encode())
    fsync_dir(staging)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    fsync_dir(ctx.run_dir)
    if ctx.config.keep_checkpoints:
        for old in checkpoints(ctx.run_dir)[: -ctx.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def train(
    config: TrainConfig,
    data_dir: Path,
    run_dir: Path,
    *,
    resume: bool = False,
    split_file: Path | None = None,
    say: Callable[[str], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a run. ``say`` receives human-readable status lines."""
    import torch
    from tqdm import tqdm

    say = say or (lambda message: log.info("%s", message))
    resume_from, stored = prepare_run_dir(run_dir, config, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    examples, report = load_skincap(data_dir)
    say(f"data: {len(examples)} usable examples ({report.summary()})")
    if stored is not None:
        split_file = Path(stored["split_file"])
    split_file = split_file or default_split_file(data_dir, config.data.seed)
    split = ensure_split(
        examples,
        split_file,
        seed=config.data.seed,
        eval_fraction=config.data.eval_fraction,
        test_fraction=config.data.test_fraction,
        progress=progress,
    )
    if split.duplicate_groups:
        say(f"split: {len(split.duplicate_groups)} groups of near-duplicate images kept together")
    split.ids("train")
    split.ids("eval")
    features = resolve_features(config)
    for line in features.skipped:
        say(f"skipped (CUDA only): {line}")
    if stored is None:
        write_run_record(run_dir, config, data_dir, split_file, split, features, report)
    seed_everything(config.seed)
    processor = load_processor(
        config.base_model, min_pixels=config.data.min_pixels, max_pixels=config.data.max_pixels
    )
    ctx = _Context(
        config=config,
        run_dir=run_dir,
        processor=processor,
        prompt=render_prompt(processor.tokenizer, prompt=CAPTION_PROMPT),
        assessment_prompt=render_prompt(processor.tokenizer, prompt=ASSESSMENT_PROMPT),
        targets=AssessmentTargets() if config.tasks.assessment_ratio > 0 else None,
        examples={example.id: example for example in examples},
        split=split,
        split_file=split_file,
        features=features,
        say=say,
    )
    model = build_model(config, features, resume_from)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    say(
        f"adapter: {config.adapter.method} r={config.adapter.r} alpha={config.adapter.alpha}, "
        f"{sum(p.numel() for p in trainable):,} trainable parameters"
    )
    optimizer = make_optimizer(config, trainable)
    scheduler = make_scheduler(config, optimizer)
    step = 0
    if resume_from is not None:
        state = json.loads((resume_from / STATE_FILE).read_text())
        step = int(state["step"])
        tensors = torch.load(resume_from / TENSOR_STATE_FILE, weights_only=False)
        optimizer.load_state_dict(tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        set_rng_state(tensors["rng"])
        say(f"resuming from {resume_from.name} (step {step})")
    elif resume:
        say("nothing to resume yet: starting from step 0")
    truncate_jsonl(run_dir / LOG_FILE, step)
    truncate_jsonl(run_dir / METRICS_FILE, step)
    result = TrainResult(run_dir=run_dir, step=step)
    if step >= config.max_steps:
        say(f"already at step {step} of {config.max_steps}: nothing to do")
        return result
    batches = _Batches(split.train, config.batch_size, config.seed)
    pad = processor.tokenizer.pad_token_id or 0
    window: list[float] = []
    bar = tqdm(
        total=config.max_steps, initial=step, desc="training", unit="step", disable=not progress
    )
    epoch = 0.0
    started = time.monotonic()
    while step < config.max_steps:
        optimizer.zero_grad(set_to_none=True)
        micro_batches = []
        for micro in range(config.grad_accum):
            ids, epoch = batches.micro_batch(step * config.grad_accum + micro)
            micro_batches.append([ctx.encode(i) for i in ids])
        step_loss = accumulate_gradients(
            model, micro_batches, pad, features.device, bf16=features.bf16
        )
        torch.nn.utils.clip_grad_norm_(trainable, config.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        window.append(step_loss)
        result.losses.append((step, step_loss))
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if step % config.log_every == 0 or step == config.max_steps:
            record = {
                "step": step,
                "loss": sum(window) / len(window),
                "lr": scheduler.get_last_lr()[0],
                "epoch": round(epoch, 4),
                "seconds": round(time.monotonic() - started, 2),
            }
            append_jsonl(run_dir / LOG_FILE, record)
            window.clear()
        if step % config.eval.every == 0 or step == config.max_steps:
            bar.set_description("evaluating")
            eval_loss = _eval_loss(ctx, model)
            records = _generate_sample(ctx, model, step)
            table = _score(ctx, records)
            path = _save_checkpoint(ctx, model, optimizer, scheduler, step, epoch, records, table)
            append_jsonl(
                run_dir / METRICS_FILE,
                {"step": step, "eval_loss": eval_loss, "metrics": table.to_json()},
            )
            result.checkpoints.append(path)
            bar.set_description("training")
            bar.write(f"step {step}: eval loss {eval_loss:.4f}, saved {path.name}")
    bar.close()
    result.step = step
    return result
