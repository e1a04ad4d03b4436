"""Typed settings, loaded once at the edge (CLI or server start-up) and passed down.

Nothing below the CLI reads environment variables: code receives these objects.
Environment variables use the prefix ``SKINSPECTOR_`` and ``__`` for nesting, e.g.
``SKINSPECTOR_ENGINE__SAMPLING__TEMPERATURE=0.2``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "IMAGE_FACTOR",
    "EngineSettings",
    "ImageSettings",
    "SamplingSettings",
    "Settings",
    "default_cache_dir",
]

#: Qwen2.5-VL: 14-pixel patches merged 2x2, so image sides are multiples of 28.
IMAGE_FACTOR = 28


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/skinspector`` (``~/.cache/skinspector`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "skinspector"


class SamplingSettings(BaseModel):
    """Sampling parameters; defaults are the seed report's (section 7.2)."""

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Softmax temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(25, ge=0, le=1000, description="Top-k cut-off (0 disables).")
    repeat_penalty: float = Field(1.0, ge=0.5, le=2.0, description="1.0 = no penalty.")
    max_tokens: int = Field(512, ge=1, le=4096, description="Generated tokens at most.")
    seed: int | None = Field(None, ge=0, description="Fixed seed for reproducible output.")


class ImageSettings(BaseModel):
    """Image preparation limits (pixel budget from the seed report)."""

    min_pixels: int = Field(256 * IMAGE_FACTOR * IMAGE_FACTOR, ge=IMAGE_FACTOR**2)
    max_pixels: int = Field(512 * IMAGE_FACTOR * IMAGE_FACTOR, ge=IMAGE_FACTOR**2)
    max_input_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="Upload size cap.")
    max_input_pixels: int = Field(
        64_000_000, ge=1, description="Decoded pixel cap (decompression-bomb guard)."
    )
    max_aspect_ratio: float = Field(20.0, ge=1.0, description="Longest/shortest side cap.")


class EngineSettings(BaseModel):
    """Where the model files are and how llama.cpp runs them."""

    model_path: Path | None = Field(None, description="Language-model GGUF (Q4_K_M).")
    mmproj_path: Path | None = Field(None, description="Vision-projector GGUF (F16).")
    n_ctx: int = Field(8192, ge=512, le=131072, description="Context window in tokens.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; None = all cores.")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to GPU (-1 = all).")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)


class Settings(BaseSettings):
    """Top-level settings of one process."""

    model_config = SettingsConfigDict(
        env_prefix="SKINSPECTOR_", env_nested_delimiter="__", extra="ignore"
    )

    cache_dir: Path = Field(default_factory=default_cache_dir, description="Built artefacts.")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
