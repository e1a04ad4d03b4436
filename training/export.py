"""GGUF export of the vision-language model: HF Qwen2.5-VL folder -> LM GGUF (f16, then
Q4_K_M by default) + vision-projector GGUF (F16, never quantized) + a manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from skinspector.core.errors import InputError
from skinspector.core.export_manifest import EXPORT_MANIFEST, read_export_manifest
from skinspector.core.gguf import QUANT_TYPES, convert_hf_to_gguf, quantize
from skinspector.core.storage import file_sha256, write_atomic

__all__ = ["EXPORT_MANIFEST", "GgufExport", "export_gguf", "export_model", "read_export"]


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
    if quant.upper() == "F16":
        quantized = f16
    else:
        quantized = quantize(f16, out_dir / f"{stem}-{quant.lower()}.gguf", quant)
    mmproj = convert_hf_to_gguf(hf_dir, out_dir / f"mmproj-{stem}-f16.gguf", mmproj=True)
    return GgufExport(model_f16=f16, model=quantized, mmproj=mmproj)


def export_model(
    hf_dir: Path, out_dir: Path, quant: str = "Q4_K_M", *, keep_f16: bool = False
) -> GgufExport:
    """Export a merged model folder and write ``export.json`` (files, hashes, provenance)."""
    quant = quant.upper()
    if quant not in QUANT_TYPES:
        raise InputError(f"unknown quantization {quant!r}; choose one of {sorted(QUANT_TYPES)}")
    if not (hf_dir / "config.json").is_file():
        raise InputError(f"{hf_dir} is not a Hugging Face model folder (no config.json)")
    exported = export_gguf(hf_dir, out_dir, quant)
    if not keep_f16 and exported.model_f16 != exported.model:
        exported.model_f16.unlink()
    provenance = {}
    if (hf_dir / "merge.json").is_file():
        provenance = json.loads((hf_dir / "merge.json").read_text())
    files = [exported.model, exported.mmproj]
    if keep_f16 and exported.model_f16 != exported.model:
        files.append(exported.model_f16)
    manifest = {
        "format": 1,
        "quant": quant,
        "model": exported.model.name,
        "mmproj": exported.mmproj.name,
        "mmproj_type": "F16",
        "source": str(hf_dir.resolve()),
        "provenance": provenance,
        "files": {
            path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)} for path in files
        },
    }
    write_atomic(out_dir / EXPORT_MANIFEST, json.dumps(manifest, indent=1).encode())
    return exported


def read_export(gguf_dir: Path, *, verify: bool = True) -> tuple[Path, Path]:
    """(language model, projector) of an export folder: from ``export.json`` (each file's
    size and SHA-256 checked unless ``verify`` is false), or the only ``*.gguf`` pair when
    the folder has no manifest."""
    if (gguf_dir / EXPORT_MANIFEST).is_file():
        manifest = read_export_manifest(gguf_dir, verify=verify)
        return manifest.model, manifest.mmproj
    ggufs = sorted(gguf_dir.glob("*.gguf"))
    projectors = [p for p in ggufs if p.name.startswith("mmproj")]
    models = [p for p in ggufs if not p.name.startswith("mmproj")]
    if len(projectors) != 1 or len(models) != 1:
        raise InputError(
            f"{gguf_dir} has no {EXPORT_MANIFEST} and not exactly one model and one mmproj GGUF"
        )
    return models[0], projectors[0]
