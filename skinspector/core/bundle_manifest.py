"""The bundle manifest: what a model + knowledge-base bundle directory contains.

A bundle directory holds ``bundle.json`` and the files it names, all relative to the
directory: the language-model GGUF, the vision-projector GGUF and the knowledge-base index
directory. The edge server loads the active bundle; the update tooling
(:mod:`updates`: build, sign, publish, verify, activate) builds on this same
model.

A signed update bundle (``format_version`` 2) also lists **every file** it ships with its
size and SHA-256 (``files``), so the clinic verifies each file again while installing it,
the sampling defaults the model was evaluated with, the oldest server version that can run
it, and a model card (base model, training data and its licence, evaluation results,
intended use). Bundles without these fields (the demo bundle, hand-made bundles) still
load.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field, field_validator, model_validator

from skinspector.core.errors import ModelFileError
from skinspector.core.settings import SamplingSettings

__all__ = [
    "BUNDLE_MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "BundleFile",
    "BundleManifest",
    "ModelCard",
    "parse_version",
]

BUNDLE_MANIFEST_NAME = "bundle.json"
#: 1: model, mmproj, index only. 2: adds files (size + SHA-256), sampling, card.
MANIFEST_FORMAT = 2

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")


def parse_version(value: str) -> tuple[int, int, int] | None:
    """``"1.2.3"`` -> ``(1, 2, 3)``; None for anything that is not plain X.Y.Z."""
    found = _VERSION.match(value)
    if found is None:
        return None
    return int(found[1]), int(found[2]), int(found[3])


def _check_relative(value: str) -> str:
    path = PurePosixPath(value)
    if (
        path.is_absolute()
        or not path.parts
        or any(part in ("", ".", "..") for part in path.parts)
        or "\\" in value
        or value != path.as_posix()
    ):
        raise ValueError(f"bundle paths must be relative and inside the bundle: {value!r}")
    return value


class BundleFile(BaseModel):
    """One file of the bundle, as the maintainer built it."""

    path: str = Field(min_length=1, max_length=512, description="Relative POSIX path.")
    size: int = Field(ge=0, description="Bytes.")
    sha256: str = Field(description="Lower-case hex digest.")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return _check_relative(value)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 lower-case hex characters")
        return value


class ModelCard(BaseModel):
    """What the model is, what it was trained on, how it scored, what it is for."""

    base_model: str = Field(min_length=1, max_length=2000)
    training_data: str = Field(min_length=1, max_length=8000)
    data_licence: str = Field(min_length=1, max_length=2000)
    evaluation: str = Field(min_length=1, max_length=16000)
    intended_use: str = Field(
        min_length=1, max_length=300, description="One line, shown by the phone and review UIs."
    )
    file: str | None = Field(None, description="The full card (Markdown) inside the bundle.")


class PassLimits(BaseModel):
    """Per-bundle defaults for the two-pass analysis (settings set explicitly win)."""

    findings_max_tokens: int | None = Field(None, ge=8, le=1024, description="Pass 1.")
    report_max_tokens: int | None = Field(None, ge=16, le=4096, description="Pass 2.")


class BundleManifest(BaseModel):
    format_version: int = Field(1, ge=1, le=MANIFEST_FORMAT)
    version: str = Field(min_length=1, max_length=64, description="e.g. 2026.11.1")
    model_id: str = Field(min_length=1, max_length=200, description="Name shown by /v1/models.")
    model: str = Field(description="Language-model GGUF, relative path.")
    mmproj: str = Field(description="Vision-projector GGUF, relative path.")
    index: str | None = Field(None, description="Knowledge-base index directory, relative.")
    embedder: str | None = Field(None, description="Query-embedder GGUF, relative path.")
    demo: bool = Field(False, description="True for the random-weights demo bundle.")
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    sampling: SamplingSettings | None = Field(
        None, description="Sampling defaults the model was evaluated with."
    )
    limits: PassLimits | None = Field(None, description="Pass length defaults.")
    prompts: dict[str, str] | None = Field(
        None,
        description="Prompt name -> version the model was trained on (from the training "
        "export); the server refuses a model trained on another version of a prompt it sends.",
    )
    min_server_version: str | None = Field(
        None, description="Oldest server (X.Y.Z) that can run this bundle."
    )
    card: ModelCard | None = None
    files: list[BundleFile] = Field(
        default_factory=list, description="Every file of the bundle (bundle.json excluded)."
    )

    @field_validator("model", "mmproj", "index", "embedder")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        return value if value is None else _check_relative(value)

    @field_validator("min_server_version")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None and parse_version(value) is None:
            raise ValueError(f"min_server_version must be X.Y.Z, got {value!r}")
        return value

    @model_validator(mode="after")
    def _files_consistent(self) -> BundleManifest:
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a file is listed twice")
        if BUNDLE_MANIFEST_NAME in paths:
            raise ValueError(f"{BUNDLE_MANIFEST_NAME} cannot list itself")
        if self.files:
            listed = set(paths)
            for name in (self.model, self.mmproj, self.embedder):
                if name is not None and name not in listed:
                    raise ValueError(f"{name} is not among the listed files")
            if self.index is not None and not any(p.startswith(f"{self.index}/") for p in listed):
                raise ValueError(f"no listed file is inside the index {self.index}")
        return self

    @property
    def intended_use(self) -> str | None:
        return self.card.intended_use if self.card else None

    @classmethod
    def read(cls, bundle_dir: Path) -> BundleManifest:
        path = bundle_dir / BUNDLE_MANIFEST_NAME
        if not path.is_file():
            raise ModelFileError(f"{bundle_dir} is not a bundle (no {BUNDLE_MANIFEST_NAME})")
        try:
            return cls.from_bytes(path.read_bytes(), str(path))
        except OSError as exc:
            raise ModelFileError(f"{path} cannot be read: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes, where: str = BUNDLE_MANIFEST_NAME) -> BundleManifest:
        try:
            return cls.model_validate_json(data)
        except ValueError as exc:
            raise ModelFileError(f"{where} is not a valid bundle manifest: {exc}") from exc

    def to_bytes(self) -> bytes:
        return self.model_dump_json(indent=2, exclude_none=True).encode()

    def write(self, bundle_dir: Path) -> None:
        (bundle_dir / BUNDLE_MANIFEST_NAME).write_bytes(self.to_bytes())
