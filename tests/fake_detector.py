"""A stand-in for the object detector (`indexer.objects`): deterministic boxes from colours, no model.

Each `COLOURS` entry is a saturated colour that none of the fake backbone's palette (tests/fake_backbone.py)
or the scikit-image photos uses; wherever a photo holds it, the fake detector finds one box of its COCO class
around all its pixels, with a confidence that grows with how much of that box the colour fills. So a test
paints a magenta block and expects a person there, and every other photo has no objects.
"""

from __future__ import annotations

import threading

import numpy as np

from indexer.boxes import Box
from indexer.labels import COCO_CLASSES, object_class

#: Colour -> the COCO class found where it is.
COLOURS = {
    (255, 0, 255): object_class(COCO_CLASSES.index("person")),
    (0, 255, 255): object_class(COCO_CLASSES.index("car")),
    (255, 255, 0): object_class(COCO_CLASSES.index("dog")),
}
#: A pixel is of a colour when every channel lies this close to it (JPEG moves a painted colour a little).
TOLERANCE = 40
#: A colour counts from this many pixels of the (shrunk) photo.
MIN_PIXELS = 16
#: The confidence of a box its colour fills wholly, and of one it barely fills.
FULL, EMPTY = 0.9, 0.5


class FakeObjectDetector:
    """Implements `indexer.detect.ObjectDetector`; records the batches it was given and the threads it ran on."""

    batch = 4

    def __init__(self):
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def detect(self, photos, sizes) -> list[list[Box]]:
        self.batches.append(len(photos))
        self.threads.add(threading.current_thread().name)
        return [self.boxes(pixels, size) for pixels, size in zip(photos, sizes)]

    def boxes(self, pixels: np.ndarray, size: tuple[int, int]) -> list[Box]:
        height, width = pixels.shape[:2]
        sx, sy = size[0] / width, size[1] / height
        found = []
        for colour, class_id in COLOURS.items():
            near = np.all(np.abs(pixels.astype(np.int16) - np.array(colour, np.int16)) <= TOLERANCE, axis=-1)
            if near.sum() < MIN_PIXELS:
                continue
            rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
            x0, y0, x1, y1 = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
            fill = near.sum() / ((x1 - x0) * (y1 - y0))
            found.append(Box(class_id, x0 * sx, y0 * sy, x1 * sx, y1 * sy, round(EMPTY + (FULL - EMPTY) * fill, 4)))
        return sorted(found, key=lambda b: -b.confidence)


class FakeObjectDetectors:
    """A loader like `indexer.objects.Detectors`: a new fake detector at each call, each kept in ``built``.
    Picklable (Ray actors call it)."""

    def __init__(self):
        self.built: list[FakeObjectDetector] = []

    def __call__(self) -> FakeObjectDetector:
        self.built.append(FakeObjectDetector())
        return self.built[-1]


def install() -> None:
    """Make the fake detector this process's default (`pipeline.default_object_detectors`), as
    tests/conftest.py does for the test process: for the child processes tests start."""
    from indexer import pipeline

    pipeline.default_object_detectors = FakeObjectDetectors
