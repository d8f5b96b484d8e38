"""How closely a faster path (int8, bf16) answers like fp32 on photos: the figures `imgidx runtime check` and
the benches print.

- **class map**: the share of map positions whose top class is the same, each photo at its working shape
  (the view the index's cells are read from); also the worst photo's share;
- **224 crop**: the overlap of the top-5 classes of the image-level logits (the map's mean) on the seed's
  input, vgg_preprocessing's eval crop (`seed_crop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from indexer import images
from indexer.geometry import total_stride
from indexer.models.base import Backbone

TOP_K = 5
#: vgg_preprocessing's evaluation path: shorter side resized to this, then the central crop.
SEED_RESIZE, SEED_CROP = 256, 224


@dataclass(frozen=True)
class Agreement:
    photos: int
    positions: int
    same_top: float
    worst_same_top: float
    worst_photo: str
    top5_overlap: float

    def line(self) -> str:
        return (f"same top class at {100 * self.same_top:.1f}% of {self.positions} class-map positions "
                f"(worst photo {100 * self.worst_same_top:.0f}%: {self.worst_photo}); 224-crop top-{TOP_K} "
                f"overlap {100 * self.top5_overlap:.0f}%, on {self.photos} photos")


def seed_crop(image: np.ndarray) -> np.ndarray:
    """vgg_preprocessing's eval input: aspect-preserving resize (shorter side 256), central 224 crop."""
    h, w = image.shape[:2]
    scale = SEED_RESIZE / min(h, w)
    resized = images.resize(image, (max(SEED_RESIZE, round(h * scale)), max(SEED_RESIZE, round(w * scale))))
    top, left = (resized.shape[0] - SEED_CROP) // 2, (resized.shape[1] - SEED_CROP) // 2
    return resized[top:top + SEED_CROP, left:left + SEED_CROP]


def top_k(logits: np.ndarray) -> set[int]:
    return set(np.argsort(-logits)[:TOP_K].tolist())


def compare(reference: Backbone, candidate: Backbone, photos: Mapping[str, np.ndarray], size: int) -> Agreement:
    """``candidate`` against ``reference`` on ``photos`` (name -> RGB pixels) at working size ``size``."""
    stride = total_stride(reference.layers)
    same, counts = {}, {}
    for name, pixels in photos.items():
        working = images.resize(pixels, images.working_shape(*pixels.shape[:2], size, stride))[None]
        expected, got = reference.class_map(working)[0], candidate.class_map(working)[0]
        same[name] = float((expected.argmax(-1) == got.argmax(-1)).mean())
        counts[name] = expected.shape[0] * expected.shape[1]
    crops = np.stack([seed_crop(pixels) for pixels in photos.values()])
    expected_crops, got_crops = reference.class_map(crops), candidate.class_map(crops)
    overlaps = [len(top_k(e.mean((0, 1))) & top_k(g.mean((0, 1)))) / TOP_K for e, g in zip(expected_crops, got_crops)]
    worst = min(same, key=same.get)
    total = sum(counts.values())
    return Agreement(
        photos=len(photos), positions=total, same_top=sum(same[n] * counts[n] for n in same) / total,
        worst_same_top=same[worst], worst_photo=worst, top5_overlap=float(np.mean(overlaps)),
    )
