"""Test pictures with known content per cell: real photos pasted into chosen cells of a 3x3 canvas.

Shared by the end-to-end indexing tests and `bench/working_size.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(__file__).parent / "photos"
#: Each photo's ImageNet classes (the ones EfficientNet-Lite0 gives it as a whole, siblings summed).
CLASS_SETS = {
    "chelsea": frozenset(range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": frozenset({967, 968, 504}),  # espresso, cup, coffee mug
    "motorcycle": frozenset({665, 670}),  # moped, motor scooter
    "rocket": frozenset({657, 744, 812}),  # missile, projectile, space shuttle
}
#: A 4:3 canvas like a camera's, small enough to decode fast.
CANVAS_HW = (900, 1200)
BACKGROUND = 128
JPEG_QUALITY = 92
EXIF_ORIENTATION = 0x0112


def photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / f"{name}.jpg").convert("RGB"))


def _fill(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the aspect of ``height x width``, then resize to it."""
    h, w = pixels.shape[:2]
    scale = max(height / h, width / w)
    crop_h, crop_w = round(height / scale), round(width / scale)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    cropped = Image.fromarray(pixels[top : top + crop_h, left : left + crop_w])
    return np.asarray(cropped.resize((width, height), Image.Resampling.LANCZOS))


def composite(placements: dict[int, str], canvas_hw: tuple[int, int] = CANVAS_HW) -> np.ndarray:
    """A grey canvas with photo ``placements[cell]`` filling each chosen cell (0 top-left .. 8 bottom-right)."""
    height, width = canvas_hw
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    rows, cols = np.linspace(0, height, 4).round().astype(int), np.linspace(0, width, 4).round().astype(int)
    for cell, name in placements.items():
        r, c = divmod(cell, 3)
        canvas[rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = _fill(
            photo(name), rows[r + 1] - rows[r], cols[c + 1] - cols[c]
        )
    return canvas


def save_jpeg(pixels: np.ndarray, path: Path, orientation: int | None = None) -> Path:
    """Write ``pixels`` as a JPEG, optionally tagged with an EXIF orientation."""
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    return path


def as_phone_photo(upright: np.ndarray) -> np.ndarray:
    """The pixels a phone stores for ``upright`` with EXIF orientation 6 (shown turned 90 degrees clockwise)."""
    return np.ascontiguousarray(np.rot90(upright, k=1))
