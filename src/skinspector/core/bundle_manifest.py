"""The bundle manifest: what a model + knowledge-base bundle directory contains.

A bundle directory holds ``bundle.json`` and the files it names, all relative to the
directory: the language-model GGUF, the vision-projector GGUF and the knowledge-base index
directory. The edge server loads the active bundle; the update-bundle tooling (signing,
publishing) builds on this same model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field, field_validator

from skinspector.core.errors import ModelFileError

__all__ = ["BUNDLE_MANIFEST_NAME", "BundleManifest"]

BUNDLE_MANIFEST_NAME = "bundle.json"


class BundleManifest(BaseModel):
    version: str = Field(min_length=1, max_length=64, description="e.g. 2026.11.1")
    model_id: str = Field(min_length=1, max_length=200, description="Name shown by /v1/models.")
    model: str = Field(description="Language-model GGUF, relative path.")
    mmproj: str = Field(description="Vision-projector GGUF, relative path.")
    index: str | None = Field(None, description="Knowledge-base index directory, relative.")
    demo: bool = Field(False, description="True for the random-weights demo bundle.")
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @field_validator("model", "mmproj", "index")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return value
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"bundle paths must be relative and inside the bundle: {value!r}")
        return value

    @classmethod
    def read(cls, bundle_dir: Path) -> BundleManifest:
        path = bundle_dir / BUNDLE_MANIFEST_NAME
        if not path.is_file():
            raise ModelFileError(f"{bundle_dir} is not a bundle (no {BUNDLE_MANIFEST_NAME})")
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as exc:
            raise ModelFileError(f"{path} is not a valid bundle manifest: {exc}") from exc

    def write(self, bundle_dir: Path) -> None:
        (bundle_dir / BUNDLE_MANIFEST_NAME).write_text(self.model_dump_json(indent=2))
