"""A folder of realistic full-size camera JPEGs for the indexing benchmarks (made once, then reused).

Each file is a real photo from tests/photos (or a composite of them), cropped at random, scaled to
4000x3000 (by default) and given sensor-like noise, so it has the entropy, file size (3-5 MB at quality 92) and
decoding cost of a 12 MP camera photo. Every fourth is stored the way a phone stores a portrait shot:
landscape pixels with EXIF orientation 6, so the folder holds two working shapes, as a real one does.

tests/photos hold no people; ``source`` takes the photos from another folder instead (the JPEGs of
``../shared/realscenes-dev/images``, everyday scenes with people, for the box pass, whose cost depends on the
people in a photo), in name order, each cropped and scaled the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from composites import CLASS_SETS, as_phone_photo, composite, photo, save_jpeg  # noqa: E402

FULL_HW = (3000, 4000)
NOISE_SIGMA = 6.0
PORTRAIT_EVERY = 4
OUT = Path(__file__).resolve().parent / "out"


def _picture(rng: np.random.Generator, index: int) -> np.ndarray:
    names = list(CLASS_SETS)
    if index % 2:
        cells = rng.choice(9, size=2, replace=False)
        return composite({int(cells[0]): names[index % 4], int(cells[1]): names[(index + 1) % 4]})
    pixels = photo(names[index % 4])
    h, w = pixels.shape[:2]
    ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return pixels[top : top + ch, left : left + cw]


def _source_picture(rng: np.random.Generator, path: Path, aspect: float) -> np.ndarray:
    """A crop of the photo at ``path`` of the aspect (height over width) it will be stretched to, so people
    keep their shape."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    h, w = pixels.shape[:2]
    ch, cw = (h, min(w, round(h / aspect))) if h / w < aspect else (min(h, round(w * aspect)), w)
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return pixels[top : top + ch, left : left + cw]


def make_folder(count: int, full_hw: tuple[int, int] = FULL_HW, seed: int = 0, source: Path | None = None) -> Path:
    """``count`` camera-like JPEGs of ``full_hw`` in bench/out, from tests/photos or the JPEGs of ``source``;
    existing files are kept."""
    name = f"photos-{count}" if full_hw == FULL_HW else f"photos-{count}-{full_hw[1]}x{full_hw[0]}"
    folder = OUT / (name if source is None else f"{name}-{source.parent.name}-{source.name}")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = sorted(source.glob("*.jpg")) if source is not None else []
    if source is not None and len(sources) < count:
        raise SystemExit(f"{source} holds {len(sources)} JPEGs, fewer than {count}")
    for index in range(count):
        path = folder / f"IMG_{index:04d}.jpg"
        if path.exists():
            continue
        portrait = index % PORTRAIT_EVERY == PORTRAIT_EVERY - 1
        height, width = full_hw[::-1] if portrait else full_hw
        small = Image.fromarray(_source_picture(rng, sources[index], height / width) if sources else _picture(rng, index))
        big = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
        noisy = np.clip(big + rng.normal(0, NOISE_SIGMA, big.shape).astype(np.float32), 0, 255).astype(np.uint8)
        if portrait:
            save_jpeg(as_phone_photo(noisy), path, orientation=6)
        else:
            save_jpeg(noisy, path)
    return folder
