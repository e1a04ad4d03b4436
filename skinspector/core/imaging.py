"""Image preparation: every photo goes through here before it is stored or inferred on.

decode (JPEG, PNG, WebP) -> apply EXIF orientation -> drop every piece of metadata
(EXIF incl. GPS, XMP, ICC after conversion to sRGB) -> RGB -> resize to the Qwen2.5-VL
pixel budget with both sides multiples of 28.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from skinspector.core.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from skinspector.core.settings import IMAGE_FACTOR, ImageSettings

__all__ = [
    "ACCEPTED_FORMATS",
    "LOSSLESS_MAX_PIXELS",
    "DecodePool",
    "PreparedImage",
    "decode_cost",
    "fit_to_pixel_budget",
    "prepare_image",
]

#: Pillow format names we accept. MPO is the multi-picture JPEG many phones write.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
_SRGB = ImageCms.createProfile("sRGB")
_EXIF_ORIENTATION = 0x0112
#: PNG and WebP decode at full size (no DCT-domain downscale as for JPEG), so a tiny file
#: can cost seconds and hundreds of MB: they get a lower pixel cap than JPEG.
LOSSLESS_MAX_PIXELS = 16_000_000
#: Working memory of one decode per source pixel: the decoded image, its RGB/sRGB copy
#: and the resampling buffers (measured ~9.4 bytes/pixel for a 64 MP PNG; rounded up).
_BYTES_PER_PIXEL = 10


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A clean, resized RGB image encoded as JPEG, with no metadata."""

    jpeg: bytes
    width: int
    height: int
    source_width: int
    source_height: int
    source_format: str

    @property
    def merged_patches(self) -> int:
        """Vision tokens Qwen2.5-VL spends on it: one per 28x28 block."""
        return (self.width // IMAGE_FACTOR) * (self.height // IMAGE_FACTOR)

    def data_uri(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


def fit_to_pixel_budget(
    width: int, height: int, min_pixels: int, max_pixels: int, factor: int = IMAGE_FACTOR
) -> tuple[int, int]:
    """Target (width, height): multiples of ``factor``, area in [min_pixels, max_pixels],
    aspect ratio kept as closely as the grid allows (Qwen2-VL's ``smart_resize`` rule)."""
    w = max(factor, round(width / factor) * factor)
    h = max(factor, round(height / factor) * factor)
    if w * h > max_pixels:
        beta = math.sqrt((width * height) / max_pixels)
        w = max(factor, math.floor(width / beta / factor) * factor)
        h = max(factor, math.floor(height / beta / factor) * factor)
    elif w * h < min_pixels:
        beta = math.sqrt(min_pixels / (width * height))
        w = math.ceil(width * beta / factor) * factor
        h = math.ceil(height * beta / factor) * factor
    return w, h


def _open(data: bytes, settings: ImageSettings) -> Image.Image:
    if not data:
        raise ImageDecodeError("the file is empty (0 bytes)")
    if len(data) > settings.max_input_bytes:
        raise ImageTooLargeError(
            f"the file is {len(data)} bytes; the limit is {settings.max_input_bytes} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("the image has too many pixels to decode safely") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError("the file is not a JPEG, PNG or WebP image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # ValueError: e.g. a PNG text chunk that inflates past Pillow's limit
        raise ImageDecodeError("the image cannot be read") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise UnsupportedImageError(
            f"{image.format} images are not accepted; send a JPEG, PNG or WebP photo"
        )
    width, height = image.size
    cap = settings.max_input_pixels
    if image.format in ("PNG", "WEBP"):
        cap = min(cap, LOSSLESS_MAX_PIXELS)
    if width * height > cap:
        raise ImageTooLargeError(
            f"the image is {width}x{height} pixels; the limit for {image.format} is {cap} pixels"
        )
    if max(width, height) / max(1, min(width, height)) > settings.max_aspect_ratio:
        raise UnsupportedImageError(
            f"the image is {width}x{height}; its aspect ratio exceeds "
            f"{settings.max_aspect_ratio:g}:1"
        )
    return image


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"the image is truncated or corrupt: {exc}") from exc


def _to_srgb(image: Image.Image) -> Image.Image:
    """RGB in sRGB; an embedded ICC profile is applied, then dropped."""
    icc = image.info.get("icc_profile")
    if image.mode not in ("RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "I", "F"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    if icc and image.mode in ("RGB", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError):
            pass  # an unusable profile: fall back to a plain conversion below
    return image.convert("RGB")


def prepare_image(data: bytes, settings: ImageSettings | None = None) -> PreparedImage:
    """Decode, orient, strip and resize one photo. Raises ``InputError`` subclasses."""
    settings = settings or ImageSettings()
    image = _open(data, settings)
    source_format = str(image.format)
    raw_width, raw_height = image.size
    try:
        swapped = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise ImageDecodeError("the image's metadata cannot be read") from exc
    source_width, source_height = (raw_height, raw_width) if swapped else (raw_width, raw_height)
    width, height = fit_to_pixel_budget(
        source_width, source_height, settings.min_pixels, settings.max_pixels
    )
    if source_format in ("JPEG", "MPO"):
        # DCT-domain downscale while decoding (1/2, 1/4, 1/8): never below the target size.
        image.draft("RGB", (height, width) if swapped else (width, height))
    _load(image)
    try:
        oriented = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"the image cannot be decoded: {exc}") from exc
    rgb = _to_srgb(oriented)
    if (width, height) != rgb.size:
        # reducing_gap speeds up large downscales (12 MP -> 0.4 MP) with no visible loss.
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    clean = Image.new("RGB", rgb.size)
    clean.paste(rgb)  # a fresh image carries no info dict: no EXIF, XMP, ICC or comments
    buffer = io.BytesIO()
    clean.save(buffer, format="JPEG", quality=92, optimize=True)
    return PreparedImage(
        jpeg=buffer.getvalue(),
        width=width,
        height=height,
        source_width=source_width,
        source_height=source_height,
        source_format=source_format,
    )


def decode_cost(data: bytes, settings: ImageSettings | None = None) -> int:
    """Estimated peak memory (bytes) of :func:`prepare_image` on ``data``, from its header
    only (no pixels decoded). Raises the same ``InputError`` s as ``prepare_image``'s checks."""
    settings = settings or ImageSettings()
    image = _open(data, settings)
    width, height = image.size
    pixels = width * height
    if image.format in ("JPEG", "MPO"):
        target = fit_to_pixel_budget(width, height, settings.min_pixels, settings.max_pixels)
        scale = 1
        while (
            scale < 8
            and (width // (scale * 2)) >= target[0]
            and (height // (scale * 2)) >= target[1]
        ):
            scale *= 2  # draft() decodes at 1/scale
        pixels = max(pixels // (scale * scale), target[0] * target[1])
    return pixels * _BYTES_PER_PIXEL + len(data)


class DecodePool:
    """Photo decoding off the event loop, on a few threads of its own (never the default
    pool other requests share), with a memory budget: a decode waits until its estimated
    cost fits beside the decodes in flight; one bigger than the whole budget is refused
    (:class:`ImageTooLargeError`, 413)."""

    def __init__(self, workers: int = 2, budget_bytes: int = 512 * 1024 * 1024) -> None:
        self.budget_bytes = budget_bytes
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._in_use = 0
        self._changed: asyncio.Condition | None = None

    async def prepare(self, data: bytes, settings: ImageSettings | None = None) -> PreparedImage:
        """:func:`prepare_image` in the pool, within the memory budget."""
        loop = asyncio.get_running_loop()
        cost = await loop.run_in_executor(self._executor, decode_cost, data, settings)
        if cost > self.budget_bytes:
            raise ImageTooLargeError("the image would need too much memory to decode")
        if self._changed is None:
            self._changed = asyncio.Condition()
        changed = self._changed
        async with changed:
            await changed.wait_for(lambda: self._in_use + cost <= self.budget_bytes)
            self._in_use += cost
        try:
            return await loop.run_in_executor(self._executor, prepare_image, data, settings)
        finally:
            async with changed:
                self._in_use -= cost
                changed.notify_all()

    def close(self) -> None:
        """Stop the threads (decodes in flight finish first)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
