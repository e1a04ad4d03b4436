from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from skinspector.core.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from skinspector.core.imaging import fit_to_pixel_budget, prepare_image
from skinspector.core.samples import lesion_photo
from skinspector.core.settings import ImageSettings

BUDGET = ImageSettings()


def _decode(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (4000, 3000),
        (3000, 4000),
        (640, 480),
        (100, 100),
        (28, 28),
        (5000, 400),
        (448, 448),
        (1234, 567),
    ],
)
def test_pixel_budget_respected(width: int, height: int) -> None:
    w, h = fit_to_pixel_budget(width, height, BUDGET.min_pixels, BUDGET.max_pixels)
    assert w % 28 == 0
    assert h % 28 == 0
    assert BUDGET.min_pixels <= w * h <= BUDGET.max_pixels
    # aspect ratio kept within one grid step
    assert abs(w / h - width / height) <= (width / height) * 0.25


def test_prepared_image_has_budgeted_size_and_no_metadata() -> None:
    prepared = prepare_image(lesion_photo(4000, 3000, seed=1))
    image = _decode(prepared.jpeg)
    assert image.size == (prepared.width, prepared.height)
    assert prepared.width % 28 == 0
    assert prepared.height % 28 == 0
    assert BUDGET.min_pixels <= prepared.width * prepared.height <= BUDGET.max_pixels
    assert len(image.getexif()) == 0
    assert "exif" not in image.info
    assert "icc_profile" not in image.info
    assert b"SyntheticCam" not in prepared.jpeg
    assert prepared.merged_patches == (prepared.width // 28) * (prepared.height // 28)


def test_source_has_gps_that_is_stripped() -> None:
    source = lesion_photo(800, 600, seed=2, with_gps=True)
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(0x8825)  # the input has GPS
    prepared = prepare_image(source)
    assert not _decode(prepared.jpeg).getexif().get_ifd(0x8825)


@pytest.mark.parametrize(
    ("orientation", "corner"), [(1, (0, 0)), (3, (1, 1)), (6, (1, 0)), (8, (0, 1))]
)
def test_exif_orientation_applied(orientation: int, corner: tuple[int, int]) -> None:
    """The red marker drawn top-left must end up where the EXIF rotation puts it."""
    prepared = prepare_image(lesion_photo(1200, 800, seed=3, orientation=orientation))
    image = _decode(prepared.jpeg)
    if orientation in (6, 8):
        assert image.width < image.height  # rotated by 90 degrees
    x = 5 if corner[0] == 0 else image.width - 6
    y = 5 if corner[1] == 0 else image.height - 6
    r, g, b = image.getpixel((x, y))  # type: ignore[misc]
    assert r > 200
    assert g < 60
    assert b < 60


def test_png_with_alpha_and_webp_accepted() -> None:
    rgba = Image.new("RGBA", (300, 200), (10, 20, 30, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    assert prepare_image(buffer.getvalue()).source_format == "PNG"
    webp = lesion_photo(640, 480, image_format="WEBP")
    assert prepare_image(webp).source_format == "WEBP"


def test_not_an_image() -> None:
    with pytest.raises(UnsupportedImageError):
        prepare_image(b"%PDF-1.7 this is not a photo" * 10)


def test_zero_bytes() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        prepare_image(b"")


def test_truncated_jpeg() -> None:
    data = lesion_photo(800, 600)
    with pytest.raises(ImageDecodeError, match=r"truncated|corrupt"):
        prepare_image(data[: len(data) // 2])


def test_unsupported_format_gif() -> None:
    buffer = io.BytesIO()
    Image.new("P", (64, 64)).save(buffer, format="GIF")
    with pytest.raises(UnsupportedImageError, match="GIF"):
        prepare_image(buffer.getvalue())


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge grey image, with a tiny compressed body."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    body = zlib.compress(row * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_rejected_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError):
        prepare_image(_png_bomb(30_000, 30_000))


def test_pixel_cap_is_configurable() -> None:
    with pytest.raises(ImageTooLargeError, match="pixels"):
        prepare_image(lesion_photo(1000, 1000), ImageSettings(max_input_pixels=500_000))


def test_byte_cap() -> None:
    with pytest.raises(ImageTooLargeError, match="bytes"):
        prepare_image(lesion_photo(800, 600), ImageSettings(max_input_bytes=1024))


def test_extreme_aspect_ratio_rejected() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 50)).save(buffer, format="PNG")
    with pytest.raises(UnsupportedImageError, match="aspect"):
        prepare_image(buffer.getvalue())
