"""GGUF export of the vision-language model: HF Qwen2.5-VL folder -> LM GGUF (f16, then
Q4_K_M by default) + vision-projector GGUF (F16, never quantized)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skinspector.core.gguf import convert_hf_to_gguf, quantize

__all__ = ["GgufExport", "export_gguf"]


@dataclass(frozen=True, slots=True)
class GgufExport:
    model_f16: Path
    model: Path  # quantized language model
    mmproj: Path  # vision projector, F16


def export_gguf(
    hf_dir: Path, out_dir: Path, quant: str = "Q4_K_M", *, stem: str = "model"
) -> GgufExport:
    """The whole export: LM f16 -> ``quant``, and the F16 vision projector."""
    out_dir.mkdir(parents=True, exist_ok=True)
    f16 = convert_hf_to_gguf(hf_dir, out_dir / f"{stem}-f16.gguf", mmproj=False)
    quantized = quantize(f16, out_dir / f"{stem}-{quant.lower()}.gguf", quant)
    mmproj = convert_hf_to_gguf(hf_dir, out_dir / f"mmproj-{stem}-f16.gguf", mmproj=True)
    return GgufExport(model_f16=f16, model=quantized, mmproj=mmproj)
