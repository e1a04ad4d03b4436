"""The tiny-model builder: real transformers model, real converter, real quantizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skinspector.core.gguf import ExportError, quantize
from training.tiny_model import TinyModelSpec, cache_key, ensure_tiny_model

pytestmark = pytest.mark.slow


def _tensor_types(path: Path) -> dict[str, str]:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


def test_hf_folder_is_a_qwen25_vl(tiny_model) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((tiny_model.hf_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["model_type"] == "qwen2_5_vl"
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tiny_model.hf_dir / name).is_file()
    template = json.loads((tiny_model.hf_dir / "tokenizer_config.json").read_text())
    assert "<|vision_start|><|image_pad|><|vision_end|>" in template["chat_template"]


def test_language_model_is_q4_k_m_without_fallback(tiny_model) -> None:  # type: ignore[no-untyped-def]
    types = _tensor_types(tiny_model.model)
    weights = {name: kind for name, kind in types.items() if name.endswith(".weight")}
    assert "Q4_K" in weights.values()
    assert set(weights.values()) <= {"Q4_K", "Q5_K", "Q6_K", "F32"}


def test_mmproj_is_f16(tiny_model) -> None:  # type: ignore[no-untyped-def]
    types = _tensor_types(tiny_model.mmproj)
    matrices = [
        kind for name, kind in types.items() if name.endswith(".weight") and "norm" not in name
    ]
    assert matrices
    assert set(matrices) <= {"F16", "F32"}
    assert "F16" in matrices


def test_manifest_records_files_and_hashes(tiny_model) -> None:  # type: ignore[no-untyped-def]
    manifest = tiny_model.manifest
    assert manifest["note"].startswith("random weights")
    for name in manifest["files"].values():
        assert (tiny_model.root / name).is_file()
        assert manifest["bytes"][name] == (tiny_model.root / name).stat().st_size


def test_cache_is_reused(tiny_model, cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    before = tiny_model.model.stat().st_mtime_ns
    again = ensure_tiny_model(cache_dir)
    assert again.root == tiny_model.root
    assert again.model.stat().st_mtime_ns == before


def test_cache_key_follows_the_spec() -> None:
    assert cache_key(TinyModelSpec()) == cache_key(TinyModelSpec())
    assert cache_key(TinyModelSpec()) != cache_key(TinyModelSpec(seed=7))


def test_bad_mrope_section_rejected() -> None:
    with pytest.raises(ValueError, match="mrope_section"):
        TinyModelSpec(mrope_section=(8, 8, 8)).config()


def test_quantize_refuses_unknown_type(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match="unknown quantization"):
        quantize(tiny_model.model_f16, tmp_path / "x.gguf", "Q3_XYZ")
