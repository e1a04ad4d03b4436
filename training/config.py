"""The one typed training configuration.

Defaults are the seed report's: DoRA r=16, alpha=8, dropout 0.006 on the q/k/v/o and
up/down projections; an NF4 4-bit base with double quantization and bf16 compute when CUDA
is there (QDoRA); Liger kernels on CUDA; Lion 8-bit, lr 2e-4, weight decay 0.005, cosine
schedule with warm-up; gradient checkpointing; 256-512 x 28x28 pixels per image.

A config is a TOML (or JSON) file plus ``--set section.key=value`` overrides; the resolved
config is written into the run directory and every checkpoint.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skinspector.core.errors import InputError
from skinspector.core.settings import SamplingSettings

__all__ = [
    "AdapterConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "OptimConfig",
    "TrainConfig",
    "load_config",
]

#: The production base model; a local folder works the same way (tests use the tiny one).
DEFAULT_BASE_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


class ConfigError(InputError):
    """The configuration file or an override is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterConfig(_Section):
    """DoRA/LoRA adapter on the language model (and optionally the vision MLPs)."""

    method: Literal["dora", "lora"] = "dora"
    r: int = Field(16, ge=1, le=512)
    alpha: int = Field(8, ge=1)
    dropout: float = Field(0.006, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "up_proj",
        "down_proj",
    )
    #: The report listed bare module names, which also match the vision tower's MLP
    #: up/down projections; here that choice is explicit.
    adapt_vision_mlp: bool = True


class OptimConfig(_Section):
    optimizer: Literal["lion_8bit", "lion", "adamw"] = "lion_8bit"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.005, ge=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)


class DataConfig(_Section):
    seed: int = 42
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    min_pixels: int = Field(256 * 28 * 28, ge=4 * 28 * 28)
    max_pixels: int = Field(512 * 28 * 28, ge=4 * 28 * 28)
    max_length: int = Field(2048, ge=64, description="Longest tokenised example kept.")

    @model_validator(mode="after")
    def _pixels(self) -> DataConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        return self


class EvalConfig(_Section):
    every: int = Field(100, ge=1, description="Evaluate (and save) every N optimizer steps.")
    sample_size: int = Field(16, ge=1, description="Fixed eval images generated for.")
    loss_examples: int = Field(64, ge=1, description="Eval examples for the eval loss.")
    max_new_tokens: int = Field(256, ge=1)
    bertscore: bool = Field(False, description="BERTScore at every evaluation (slow).")
    meteor: bool = Field(True, description="METEOR (skipped, and said so, without WordNet).")
    sampling: SamplingSettings = SamplingSettings()


class TaskConfig(_Section):
    #: Share of training examples (chosen per example id, deterministically) that train
    #: the server's pass-2 assessment prompt on a target synthesized from the caption, the
    #: label and the knowledge base (training.assessment_targets), so that tuning the
    #: findings prompt does not untrain the assessment. 0: captions only.
    assessment_ratio: float = Field(0.0, ge=0, le=1)


class TrainConfig(_Section):
    base_model: str = DEFAULT_BASE_MODEL
    adapter: AdapterConfig = AdapterConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    tasks: TaskConfig = TaskConfig()
    #: "auto": NF4 4-bit base (double quantization, bf16 compute) on CUDA, full precision
    #: on CPU. "nf4" forces it (bitsandbytes also runs it on CPU, slowly).
    quantization: Literal["auto", "nf4", "none"] = "auto"
    #: "auto": Liger kernels (RoPE, RMSNorm, SwiGLU, fused linear cross-entropy) on CUDA.
    liger: Literal["auto", "off"] = "auto"
    gradient_checkpointing: bool = True
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(8, ge=1)
    max_steps: int = Field(2000, ge=1, description="Optimizer steps.")
    log_every: int = Field(10, ge=1)
    keep_checkpoints: int = Field(0, ge=0, description="0 keeps every checkpoint.")
    seed: int = 42

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not KEY=VALUE (e.g. optim.lr=1e-4)")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = _parse_value(raw.strip())


def load_config(
    path: Path | None = None, overrides: tuple[str, ...] | list[str] = ()
) -> TrainConfig:
    """The config from ``path`` (TOML or JSON; none: the defaults), then ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"
            ) from exc
    for override in overrides:
        _apply_override(data, override)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid training config: {problems}") from exc
