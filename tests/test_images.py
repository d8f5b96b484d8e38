"""Decoding the image files people have: formats, modes, orientation, sizes, and bad files."""

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from indexer import images
from indexer.errors import ImageReadError


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skdata.chelsea())  # 451 x 300


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF"])
def test_every_format_decodes_to_rgb_uint8(chelsea, fmt):
    decoded = images.decode(encode(chelsea, fmt), f"cat.{fmt.lower()}")
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.shape == (300, 451, 3)
    assert (decoded.width, decoded.height) == (451, 300)
    # Lossy formats and GIF's palette stay close to the original, not merely the right shape.
    assert np.abs(decoded.pixels.astype(int) - np.asarray(chelsea, int)).mean() < 12


def test_gif_uses_the_first_frame():
    red, blue = Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue])
    pixels = images.decode(data, "anim.gif").pixels
    assert tuple(pixels[15, 20]) == (255, 0, 0)


def test_grayscale_palette_and_bilevel_become_rgb(chelsea):
    for mode in ("L", "P", "1"):
        pixels = images.decode(encode(chelsea.convert(mode), "PNG"), f"{mode}.png").pixels
        assert pixels.shape == (300, 451, 3)
    grey = images.decode(encode(chelsea.convert("L"), "PNG"), "grey.png").pixels
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_transparency_is_shown_on_white():
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((200, 10, 10, 255), (0, 0, 10, 10))
    pixels = images.decode(encode(rgba, "PNG"), "alpha.png").pixels
    assert tuple(pixels[5, 15]) == images.BACKGROUND_RGB
    assert tuple(pixels[5, 5]) == (200, 10, 10)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    ramp = np.linspace(0, images.UINT16_MAX, 256, dtype=np.uint16).reshape(16, 16)
    data = encode(Image.fromarray(ramp), "PNG")
    pixels = images.decode(data, "deep.png").pixels[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels)) > 200


def test_cmyk_jpeg_becomes_rgb(chelsea):
    data = encode(chelsea.convert("CMYK"), "JPEG", quality=95)
    pixels = images.decode(data, "print.jpg").pixels
    assert np.abs(pixels.astype(int) - np.asarray(chelsea, int)).mean() < 12


def test_exif_orientation_is_applied_before_anything_else(chelsea):
    """A phone photo stored landscape with orientation 6 is shown (and indexed) portrait."""
    upright = chelsea.transpose(Image.Transpose.ROTATE_270)  # what a person sees: 300 wide, 451 tall
    stored = chelsea  # sensor layout
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6
    decoded = images.decode(encode(stored, "JPEG", quality=95, exif=exif), "phone.jpg")
    assert (decoded.width, decoded.height) == (300, 451)
    assert np.abs(decoded.pixels.astype(int) - np.asarray(upright, int)).mean() < 8


def test_large_jpeg_is_decoded_reduced_but_reports_full_size():
    big = Image.fromarray(skdata.astronaut()).resize((4000, 3000))
    decoded = images.decode(encode(big, "JPEG", quality=85), "big.jpg", min_side=448)
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert 448 <= min(decoded.pixels.shape[:2]) < 1000


def test_decompression_bomb_is_refused(monkeypatch, chelsea):
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageReadError, match=r"^bomb.png: too large \(451x300"):
        images.decode(encode(chelsea, "PNG"), "bomb.png")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty.jpg: empty file"),
        (b"hello, I am a text file\n", "empty.jpg: not an image (unknown format)"),
    ],
)
def test_non_images_get_one_line_naming_the_file(data, message):
    with pytest.raises(ImageReadError) as info:
        images.decode(data, "empty.jpg")
    assert str(info.value) == message


def test_truncated_jpeg_is_refused(chelsea):
    data = encode(chelsea, "JPEG")
    with pytest.raises(ImageReadError, match=r"^cut.jpg: corrupt or truncated image"):
        images.decode(data[: len(data) // 2], "cut.jpg")


def test_unreadable_paths_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(ImageReadError, match=f"^{tmp_path / 'nope.jpg'}: no such file$"):
        images.load(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="is a folder, not an image$"):
        images.load(tmp_path)

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images.os, "open", denied)
    with pytest.raises(ImageReadError, match="secret.jpg: permission denied$"):
        images.load(tmp_path / "secret.jpg")


@pytest.mark.parametrize(
    "hw, expected",
    [
        ((3000, 4000), (448, 608)),  # 4:3 landscape
        ((4000, 3000), (608, 448)),  # portrait
        ((448, 448), (448, 448)),
        ((100, 1000), (448, 896)),  # panorama capped at MAX_ASPECT
        ((8, 6), (608, 448)),  # tiny images are upsampled to the working size
    ],
)
def test_working_shape(hw, expected):
    assert images.working_shape(*hw, size=448, multiple=32) == expected
