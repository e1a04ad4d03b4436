"""Merge a DoRA/LoRA checkpoint into the full-precision base model.

The adapter was trained against a 4-bit (NF4) base on CUDA; merging into that quantized
base would bake its rounding error into every weight. Here the base is always reloaded in
full precision (its own dtype, or the one asked for), the adapter applied and folded in,
and the result saved as a plain Hugging Face folder with the processor files and the
top-level ``architectures`` entry the GGUF converter needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from skinspector.core.errors import InputError, ModelError
from skinspector.core.storage import fsync_dir, write_atomic

__all__ = ["MergeError", "merge_checkpoint"]

STATE_FILE = "trainer_state.json"
ARCHITECTURE = "Qwen2_5_VLForConditionalGeneration"
_PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)


class MergeError(InputError):
    """The checkpoint cannot be merged (not a checkpoint, output exists...)."""


def _read_state(checkpoint: Path) -> dict[str, Any]:
    state_file = checkpoint / STATE_FILE
    if not (checkpoint / "adapter_config.json").is_file() or not state_file.is_file():
        raise MergeError(f"{checkpoint} is not a training checkpoint (no adapter or {STATE_FILE})")
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def merge_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    base_model: str | None = None,
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32",
    overwrite: bool = False,
) -> Path:
    """Write base + adapter, merged, to ``out_dir``; returns ``out_dir``."""
    import torch
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    state = _read_state(checkpoint)
    base = base_model or state["base_model"]
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise MergeError(f"{out_dir} exists and is not empty (use --overwrite)")
        shutil.rmtree(out_dir)
    torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the base model {base}: {exc}") from exc
    merged = PeftModel.from_pretrained(model, str(checkpoint)).merge_and_unload()
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    merged.save_pretrained(str(staging), safe_serialization=True)
    for name in _PROCESSOR_FILES:
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, staging / name)
    config_path = staging / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = [ARCHITECTURE]
    write_atomic(config_path, json.dumps(config, indent=2).encode())
    provenance = {
        "base_model": base,
        "checkpoint": str(checkpoint.resolve()),
        "step": state.get("step"),
        "prompt": state.get("prompt"),
        "prompt_version": state.get("prompt_version"),
        "prompts": state.get("prompts"),
        "split_file": state.get("split_file"),
        "split_sha256": state.get("split_sha256"),
        "adapter": state.get("hyperparameters"),
        "dtype": str(merged.dtype),
    }
    write_atomic(staging / "merge.json", json.dumps(provenance, indent=1).encode())
    fsync_dir(staging)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out_dir)
    return out_dir
