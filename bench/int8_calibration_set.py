"""Write the photos the int8 models are calibrated on by default (`indexer/data/int8_calibration/`).

Post-training quantization needs real photos to measure each layer's range; a user's own are better
(`imgidx runtime calibrate FOLDER`), but a new install needs some without a download. These are crops of
the colour photos scikit-image ships that are free to redistribute (public domain or CC0, as their
docstrings state): each whole photo, its halves and a few closer crops, stored small (shorter side
`SHORT_SIDE`). The annotated dev photos (`../shared/realscenes-dev`) may not be copied into the package
(their README), so they only measure how well these calibrate (`bench/int8_accuracy.py`).

    python bench/int8_calibration_set.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

TARGET = Path(__file__).resolve().parents[1] / "indexer" / "data" / "int8_calibration"
#: Public domain: astronaut (NASA), rocket (SpaceX); CC0: chelsea, coffee, camera.
SOURCES = {
    "astronaut": data.astronaut,
    "rocket": data.rocket,
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "camera": lambda: np.stack([data.camera()] * 3, axis=-1),
}
#: (top, left, bottom, right) as fractions of the photo: the whole, its halves, a centre and two closer crops.
CROPS = {
    "whole": (0.0, 0.0, 1.0, 1.0),
    "left": (0.0, 0.0, 1.0, 0.6),
    "right": (0.0, 0.4, 1.0, 1.0),
    "centre": (0.2, 0.2, 0.8, 0.8),
    "top": (0.0, 0.1, 0.6, 0.9),
    "bottom": (0.4, 0.1, 1.0, 0.9),
}
SHORT_SIDE = 224
JPEG_QUALITY = 88


def crop(photo: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    height, width = photo.shape[:2]
    top, left, bottom, right = box
    return photo[round(top * height):round(bottom * height), round(left * width):round(right * width)]


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, load in SOURCES.items():
        photo = np.asarray(load())[..., :3]
        for part, box in CROPS.items():
            piece = crop(photo, box)
            scale = SHORT_SIDE / min(piece.shape[:2])
            size = (round(piece.shape[1] * scale), round(piece.shape[0] * scale))
            path = TARGET / f"{name}-{part}.jpg"
            Image.fromarray(piece).resize(size, Image.Resampling.LANCZOS).save(path, quality=JPEG_QUALITY)
            total += path.stat().st_size
    print(f"wrote {len(SOURCES) * len(CROPS)} photos, {total / 1024:.0f} KB, into {TARGET}")


if __name__ == "__main__":
    main()
