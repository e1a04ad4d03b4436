"""DoRA/QLoRA fine-tuning of Qwen2.5-VL on SkinCAP: a small, explicit training loop.

An explicit loop rather than ``transformers.Trainer`` so that every piece the seed project
got wrong is visible and tested: the loss covers only the answer (``vlm.encode_example``),
the prompt is the engine's (``vlm.render_prompt``), evaluation generates with the
generation prompt and fixed seeds, and a resumed run continues exactly where it stopped
(optimizer, scheduler, data order and every random generator are restored).

Run directory (the contract with ``skinspector report`` and ``review-checkpoints``)::

    RUN_DIR/run.json           config, data, split file, features used or skipped
    RUN_DIR/log.jsonl          {"step", "loss", "lr", "epoch"} every log_every steps
    RUN_DIR/metrics.jsonl      {"step", "eval_loss", "metrics"} at every evaluation
    RUN_DIR/checkpoint-N/      adapter, processor files, trainer_state.json,
                               training_state.pt, generations.jsonl, metrics.json
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinspector.core.errors import InputError, ModelError
from skinspector.core.prompt import PROMPT_VERSION
from skinspector.core.storage import fsync_dir, write_atomic
from training.config import TrainConfig
from training.data import (
    Example,
    LoadReport,
    Split,
    default_split_file,
    ensure_split,
    load_skincap,
    select,
)
from training.vlm import (
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

CHECKPOINT_PREFIX = "checkpoint-"
RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "trainer_state.json"
TENSOR_STATE_FILE = "training_state.pt"
#: Config sections a resumed run may change (the rest must match the checkpoint).
RESUMABLE_CHANGES = {"max_steps", "eval", "log_every", "keep_checkpoints"}


class RunError(InputError):
    """The run directory cannot be used as asked (exists, incompatible, nothing to resume)."""


@dataclass(frozen=True, slots=True)
class Features:
    """Which CUDA-only parts this run uses, and why the others are skipped."""

    device: str
    nf4: bool
    liger: bool
    optimizer: str
    bf16: bool
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "nf4": self.nf4,
            "liger": self.liger,
            "optimizer": self.optimizer,
            "bf16": self.bf16,
            "skipped": list(self.skipped),
        }


def resolve_features(config: TrainConfig, *, cuda: bool | None = None) -> Features:
    """Decide NF4, Liger and bf16 from the config and the hardware."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    skipped: list[str] = []
    nf4 = config.quantization == "nf4" or (config.quantization == "auto" and cuda)
    if config.quantization == "auto" and not cuda:
        skipped.append("NF4 4-bit base (QDoRA): no CUDA, training the full-precision base")
    liger = config.liger == "auto" and cuda
    if config.liger == "auto" and not cuda:
        skipped.append("Liger kernels (RoPE, RMSNorm, SwiGLU, fused linear CE): no CUDA")
    if not cuda:
        skipped.append("bf16 compute: no CUDA, computing in float32")
    return Features(
        device="cuda" if cuda else "cpu",
        nf4=nf4,
        liger=liger,
        optimizer=config.optim.optimizer,
        bf16=cuda,
        skipped=tuple(skipped),
    )


@dataclass(slots=True)
class TrainResult:
    run_dir: Path
    step: int
    checkpoints: list[Path] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)


# ----------------------------------------------------------------------- run directory


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (with their trainer state), oldest first."""
    found = []
    for path in run_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX) :]
        if path.is_dir() and suffix.isdigit() and (path / STATE_FILE).is_file():
            found.append((int(suffix), path))
    return [path for _step, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records logged after ``max_step`` (a resumed run logs them again)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= max_step
    ]
    write_atomic(path, ("\n".join(kept) + "\n" if kept else "").encode())


def _config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


# ----------------------------------------------------------------------------- model


def _target_modules(config: TrainConfig) -> str:
    names = "|".join(sorted(set(config.adapter.target_modules)))
    pattern = rf".*language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})"
    vision = sorted(set(config.adapter.target_modules) & {"gate_proj", "up_proj", "down_proj"})
    if config.adapter.adapt_vision_mlp and vision:
        pattern += rf"|.*visual\.blocks\.\d+\.mlp\.(?:{'|'.join(vision)})"
    return pattern


def _load_base(config: TrainConfig, features: Features) -> Any:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    if features.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl

        apply_liger_kernel_to_qwen2_5_vl(
            rope=True, rms_norm=True, swiglu=True, fused_linear_cross_entropy=True
        )
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if features.bf16 else torch.float32}
    if features.nf4:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if features.bf16 else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            llm_int8_skip_modules=["lm_head", "merger"],
        )
    if features.device == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(config.base_model, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the base model {config.base_model}: {exc}") from exc


def _build_model(config: TrainConfig, features: Features, resume_from: Path | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    base = _load_base(config, features)
    if features.nf4:
        base = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            base,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False
    if resume_from is not None:
        return PeftModel.from_pretrained(base, str(resume_from), is_trainable=True)
    adapter = LoraConfig(
        r=config.adapter.r,
        lora_alpha=config.adapter.alpha,
        lora_dropout=config.adapter.dropout,
        target_modules=_target_modules(config),
        use_dora=config.adapter.method == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, adapter)


def _optimizer(config: TrainConfig, params: list[Any]) -> Any:
    import torch

    optim = config.optim
    if optim.optimizer == "lion_8bit":
        from bitsandbytes.optim import Lion8bit  # type: ignore[attr-defined]

        return Lion8bit(params, lr=optim.lr, weight_decay=optim.weight_decay)  # type: ignore[no-untyped-call]
    if optim.optimizer == "lion":
        from lion_pytorch import Lion

        return Lion(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)


def _scheduler(config: TrainConfig, optimizer: Any) -> Any:
    from torch.optim.lr_scheduler import LambdaLR

    total = config.max_steps
    warmup = math.ceil(total * config.optim.warmup_ratio)
    kind = config.optim.scheduler

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------- state


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ loop


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
    prompt: str
    examples: dict[str, Example]
    split: Split
    features: Features
    say: Callable[[str], None]
    cache: dict[str, EncodedExample] = field(default_factory=dict)
    metric_suite: Any = None

    def encode(self, example_id: str) -> EncodedExample:
        if example_id not in self.cache:
            example = self.examples[example_id]
            image = load_image(
                example.image,
                min_pixels=self.config.data.min_pixels,
                max_pixels=self.config.data.max_pixels,
            )
            encoded = encode_example(self.processor, self.prompt, image, example.caption)
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
            "rng": _rng_state(),
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
        "prompt_version": PROMPT_VERSION,
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


def _prepare_run_dir(
    run_dir: Path, config: TrainConfig, resume: bool
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume from (None for a fresh run) and the stored run record."""
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        if resume and run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir} is not a training run (no {RUN_FILE})")
        return None, None
    stored = json.loads(run_file.read_text())
    if not resume:
        raise RunError(
            f"{run_dir} already holds a run: pass --resume to continue it, or a new --out"
        )
    old, new = stored["config"], config.to_json()
    changed = [key for key in _config_changes(old, new) if key not in RESUMABLE_CHANGES]
    if changed:
        raise RunError(
            f"cannot resume {run_dir}: the config differs in {', '.join(changed)} "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
        )
    return latest_checkpoint(run_dir), stored


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
    resume_from, stored = _prepare_run_dir(run_dir, config, resume)
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
    )
    split.ids("train")
    split.ids("eval")
    features = resolve_features(config)
    for line in features.skipped:
        say(f"skipped (CUDA only): {line}")
    if stored is None:
        _write_run_record(run_dir, config, data_dir, split_file, split, features, report)
    _seed_everything(config.seed)
    processor = load_processor(
        config.base_model, min_pixels=config.data.min_pixels, max_pixels=config.data.max_pixels
    )
    ctx = _Context(
        config=config,
        run_dir=run_dir,
        processor=processor,
        prompt=render_prompt(processor.tokenizer),
        examples={example.id: example for example in examples},
        split=split,
        features=features,
        say=say,
    )
    model = _build_model(config, features, resume_from)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    say(
        f"adapter: {config.adapter.method} r={config.adapter.r} alpha={config.adapter.alpha}, "
        f"{sum(p.numel() for p in trainable):,} trainable parameters"
    )
    optimizer = _optimizer(config, trainable)
    scheduler = _scheduler(config, optimizer)
    step = 0
    if resume_from is not None:
        state = json.loads((resume_from / STATE_FILE).read_text())
        step = int(state["step"])
        tensors = torch.load(resume_from / TENSOR_STATE_FILE, weights_only=False)
        optimizer.load_state_dict(tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        _set_rng_state(tensors["rng"])
        say(f"resuming from {resume_from.name} (step {step})")
    elif resume:
        say("nothing to resume yet: starting from step 0")
    _truncate_jsonl(run_dir / LOG_FILE, step)
    _truncate_jsonl(run_dir / METRICS_FILE, step)
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
        step_loss = 0.0
        for micro in range(config.grad_accum):
            ids, epoch = batches.micro_batch(step * config.grad_accum + micro)
            batch = collate([ctx.encode(i) for i in ids], pad)
            loss = model(**_model_inputs(batch, features.device)).loss
            (loss / config.grad_accum).backward()
            step_loss += float(loss.detach()) / config.grad_accum
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
            _append_jsonl(run_dir / LOG_FILE, record)
            window.clear()
        if step % config.eval.every == 0 or step == config.max_steps:
            bar.set_description("evaluating")
            eval_loss = _eval_loss(ctx, model)
            records = _generate_sample(ctx, model, step)
            table = _score(ctx, records)
            path = _save_checkpoint(ctx, model, optimizer, scheduler, step, epoch, records, table)
            _append_jsonl(
                run_dir / METRICS_FILE,
                {"step": step, "eval_loss": eval_loss, "metrics": table.to_json()},
            )
            result.checkpoints.append(path)
            bar.set_description("training")
            bar.write(f"step {step}: eval loss {eval_loss:.4f}, saved {path.name}")
    bar.close()
    result.step = step
    return result


def _write_run_record(
    run_dir: Path,
    config: TrainConfig,
    data_dir: Path,
    split_file: Path,
    split: Split,
    features: Features,
    report: LoadReport,
) -> None:
    import importlib.metadata

    versions = {}
    for dist in ("torch", "transformers", "peft", "bitsandbytes", "liger-kernel"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "absent"
    record = {
        "config": config.to_json(),
        "data_dir": str(data_dir.resolve()),
        "split_file": str(split_file.resolve()),
        "split_sizes": {
            "train": len(split.train),
            "eval": len(split.eval),
            "test": len(split.test),
        },
        "data_report": report.to_json(),
        "features": features.to_json(),
        "prompt_version": PROMPT_VERSION,
        "versions": versions,
    }
    write_atomic(run_dir / RUN_FILE, json.dumps(record, indent=1).encode())
