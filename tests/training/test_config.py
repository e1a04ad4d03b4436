"""The training config: the report's defaults, files and overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, TrainConfig, load_config
from training.model_setup import resolve_features
from training.model_setup import target_modules as _target_modules


def test_defaults_are_the_reports() -> None:
    config = TrainConfig()
    assert (config.adapter.method, config.adapter.r, config.adapter.alpha) == ("dora", 16, 8)
    assert config.adapter.dropout == 0.006
    assert set(config.adapter.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "up_proj",
        "down_proj",
    }
    assert (config.optim.optimizer, config.optim.lr, config.optim.weight_decay) == (
        "lion_8bit",
        2e-4,
        0.005,
    )
    assert config.optim.scheduler == "cosine"
    assert config.optim.warmup_ratio > 0
    assert config.gradient_checkpointing
    assert (config.data.min_pixels, config.data.max_pixels) == (256 * 28 * 28, 512 * 28 * 28)
    assert (config.data.seed, config.data.eval_fraction, config.data.test_fraction) == (
        42,
        0.1,
        0.1,
    )
    assert (config.quantization, config.liger) == ("auto", "auto")


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text("max_steps = 300\n[optim]\nlr = 1e-4\n[adapter]\nadapt_vision_mlp = false\n")
    config = load_config(path, ["optim.lr=5e-5", "eval.every=50", 'base_model="/models/x"'])
    assert config.max_steps == 300
    assert config.optim.lr == 5e-5
    assert config.eval.every == 50
    assert config.base_model == "/models/x"
    assert not config.adapter.adapt_vision_mlp


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lr=-1"], "optim.lr"),
        (["adapter.rank=8"], "adapter.rank"),
        (["nonsense"], "not KEY=VALUE"),
        (["optim.optimizer=sgd"], "optim.optimizer"),
        (["data.min_pixels=900000"], "min_pixels must not exceed max_pixels"),
    ],
)
def test_bad_overrides_are_clear_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("max_steps = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_cuda_only_parts_are_skipped_on_cpu_and_said_so() -> None:
    cpu = resolve_features(TrainConfig(), cuda=False)
    assert (cpu.nf4, cpu.liger, cpu.bf16) == (False, False, False)
    assert any("NF4" in line for line in cpu.skipped)
    assert any("Liger" in line for line in cpu.skipped)
    gpu = resolve_features(TrainConfig(), cuda=True)
    assert (gpu.nf4, gpu.liger, gpu.bf16, gpu.skipped) == (True, True, True, ())
    forced = resolve_features(load_config(None, ["quantization=nf4", "liger=off"]), cuda=False)
    assert forced.nf4
    assert not forced.liger


def test_vision_mlp_adaptation_is_explicit() -> None:
    import re

    names = [
        "model.language_model.layers.0.self_attn.q_proj",
        "model.language_model.layers.1.mlp.down_proj",
        "model.language_model.layers.1.mlp.gate_proj",
        "model.visual.blocks.2.mlp.up_proj",
        "model.visual.blocks.2.attn.proj",
        "lm_head",
    ]
    with_vision = re.compile(_target_modules(TrainConfig()))
    without = re.compile(_target_modules(load_config(None, ["adapter.adapt_vision_mlp=false"])))
    assert [n for n in names if with_vision.fullmatch(n)] == [*names[:2], names[3]]
    assert [n for n in names if without.fullmatch(n)] == names[:2]
