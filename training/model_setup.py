"""What a training run is made of: which CUDA-only features it uses, the base model (NF4 or
full precision, Liger kernels), the DoRA/LoRA adapter, the optimizer and the schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinspector.core.errors import ModelError
from training.config import TrainConfig

__all__ = [
    "Features",
    "build_model",
    "make_optimizer",
    "make_scheduler",
    "resolve_features",
    "target_modules",
]


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


def target_modules(config: TrainConfig) -> str:
    names = "|".join(sorted(set(config.adapter.target_modules)))
    pattern = rf".*language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})"
    vision = sorted(set(config.adapter.target_modules) & {"gate_proj", "up_proj", "down_proj"})
    if config.adapter.adapt_vision_mlp and vision:
        pattern += rf"|.*visual\.blocks\.\d+\.mlp\.(?:{'|'.join(vision)})"
    return pattern


def load_base(config: TrainConfig, features: Features) -> Any:
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


def build_model(config: TrainConfig, features: Features, resume_from: Path | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    base = load_base(config, features)
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
        target_modules=target_modules(config),
        use_dora=config.adapter.method == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, adapter)


def make_optimizer(config: TrainConfig, params: list[Any]) -> Any:
    import torch

    optim = config.optim
    if optim.optimizer == "lion_8bit":
        from bitsandbytes.optim import Lion8bit  # type: ignore[attr-defined]

        return Lion8bit(params, lr=optim.lr, weight_decay=optim.weight_decay)  # type: ignore[no-untyped-call]
    if optim.optimizer == "lion":
        from lion_pytorch import Lion

        return Lion(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)


def make_scheduler(config: TrainConfig, optimizer: Any) -> Any:
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
