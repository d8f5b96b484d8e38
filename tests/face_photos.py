"""Photos with faces for the face tests, made from scikit-image's astronaut (no real photo leaves shared/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from indexer import images

#: The astronaut's face in scikit-image's 512x512 photo, (left, top, right, bottom), read off the photo:
#: forehead to chin, ear to ear.
ASTRONAUT_FACE = (175, 65, 277, 172)
#: A square around her head and shoulders (left, top, side) in which the face is 106 px wide.
BUST = (80, 0, 300)
EXIF_ORIENTATION = 0x0112
#: EXIF orientation 6: the stored pixels are to be turned a quarter clockwise to be seen upright.
TURN_CLOCKWISE = 6


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def group_photo(shares, size=(900, 1200)) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A photo of ``size`` (height, width) with one astronaut bust per share, left to right along the bottom,
    scaled so that her face is that share of the shorter side; and each face's box (left, top, right,
    bottom)."""
    from skimage import data

    height, width = size
    canvas = images.resize(data.coffee(), (height, width)).copy()
    left0, top0, side0 = BUST
    bust = np.ascontiguousarray(astronaut()[top0 : top0 + side0, left0 : left0 + side0])
    face_width = ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0]
    x, placed = 20, []
    for share in shares:
        side = round(share * min(height, width) * side0 / face_width)
        y = height - side - 10
        canvas[y : y + side, x : x + side] = images.resize(bust, (side, side))
        scale = side / side0
        placed.append(tuple(v * scale + offset for v, offset in zip(
            (ASTRONAUT_FACE[0] - left0, ASTRONAUT_FACE[1] - top0, ASTRONAUT_FACE[2] - left0, ASTRONAUT_FACE[3] - top0),
            (x, y, x, y),
        )))
        x += side + 40
    return canvas, placed


def upright_jpeg(path: Path, pixels: np.ndarray | None = None) -> Path:
    Image.fromarray(astronaut() if pixels is None else pixels).save(path, quality=95)
    return path


def rotated_jpeg(path: Path, pixels: np.ndarray | None = None) -> Path:
    """The photo stored turned a quarter anticlockwise, with the EXIF orientation that turns it back."""
    image = Image.fromarray(np.rot90(astronaut() if pixels is None else pixels, k=1))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = TURN_CLOCKWISE
    image.save(path, quality=95, exif=exif)
    return path
