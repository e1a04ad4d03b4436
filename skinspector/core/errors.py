"""Exception hierarchy for the shared core, split by who is at fault.

``InputError`` subclasses are the caller's fault (a bad photo, a bad argument) and map to
HTTP 4xx or a CLI usage message. ``ModelError`` subclasses are the deployment's fault (a
missing or corrupt GGUF, a projector that does not fit the model) and map to HTTP 5xx or
a CLI error. Translation to status codes happens only at the edge (server, CLI).
"""

from __future__ import annotations

__all__ = [
    "ImageDecodeError",
    "ImageTooLargeError",
    "InputError",
    "ModelError",
    "ModelFileError",
    "ModelMismatchError",
    "SkinspectorError",
    "UnsupportedImageError",
]


class SkinspectorError(Exception):
    """Base class of every error the project raises on purpose."""


class InputError(SkinspectorError):
    """The caller supplied something unusable (client fault)."""


class UnsupportedImageError(InputError):
    """The bytes are not an image in an accepted format (JPEG, PNG, WebP)."""


class ImageDecodeError(InputError):
    """The image is empty, truncated or corrupt and cannot be decoded."""


class ImageTooLargeError(InputError):
    """The image exceeds the byte or pixel limit (decompression-bomb protection)."""


class ModelError(SkinspectorError):
    """The model files cannot be used (deployment fault)."""


class ModelFileError(ModelError):
    """A model or projector file is missing, unreadable or not a valid GGUF."""


class ModelMismatchError(ModelError):
    """The vision projector does not fit the language model."""
