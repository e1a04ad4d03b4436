"""Synthetic sample photos for the demo, tests and benchmarks (no patient data anywhere).

``lesion_photo`` draws a skin-toned background with a pigmented, irregular lesion, and can
embed EXIF (orientation, camera, GPS position) so that stripping and orientation handling
are exercised on realistic input.
"""

from __future__ import annotations

import io
import math
import random

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["lesion_photo"]

_GPS_IFD = 0x8825
_ORIENTATION = 0x0112


def lesion_photo(
    width: int = 1024,
    height: int = 768,
    *,
    seed: int = 0,
    orientation: int = 1,
    with_gps: bool = True,
    image_format: str = "JPEG",
    quality: int = 90,
) -> bytes:
    """Encoded bytes of a synthetic lesion photo; different seeds give different images."""
    rng = random.Random(seed)  # noqa: S311 - picture noise, not security
    skin = (rng.randint(150, 225), rng.randint(105, 170), rng.randint(80, 140))
    image = Image.new("RGB", (width, height), skin)
    draw = ImageDraw.Draw(image)
    for _ in range(60):  # skin texture
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randint(2, max(3, width // 60))
        shade = tuple(max(0, c - rng.randint(0, 25)) for c in skin)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=shade)
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)
    radius = min(width, height) * rng.uniform(0.12, 0.25)
    lesion = (rng.randint(40, 110), rng.randint(20, 70), rng.randint(10, 50))
    points = []
    for step in range(24):  # an irregular border
        angle = step / 24 * 6.283185307
        reach = radius * rng.uniform(0.75, 1.2)
        points.append((cx + reach * math.cos(angle), cy + reach * math.sin(angle)))
    draw.polygon(points, fill=lesion)
    # A marker in the top-left corner makes orientation testable.
    draw.rectangle((0, 0, width // 8, height // 8), fill=(255, 0, 0))
    image = image.filter(ImageFilter.GaussianBlur(radius=1.5))

    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    exif[0x010F] = "SyntheticCam"  # Make
    exif[0x0110] = "SKINspectoR sample"  # Model
    if with_gps:
        exif[_GPS_IFD] = {
            1: "S",
            2: (6.0, 12.0, 30.0),
            3: "E",
            4: (106.0, 49.0, 12.0),
        }
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
    else:
        image.save(buffer, format=image_format, exif=exif.tobytes())
    return buffer.getvalue()
