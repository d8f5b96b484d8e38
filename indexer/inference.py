"""Running a backbone the seed's two ways: one label per photo, and a coarse class map per photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from indexer import calibration, images, labels, regions
from indexer.errors import WorkingSizeError
from indexer.geometry import Geometry, minimum_input, total_stride
from indexer.models import MAX_WORKING_SIZE
from indexer.models.base import Backbone


@dataclass(frozen=True)
class Prediction:
    """One class with its probability (or, from `classify`, its calibrated confidence)."""

    class_index: int
    probability: float

    @property
    def name(self) -> str:
        return labels.class_name(self.class_index)


@dataclass(frozen=True)
class Segmentation:
    """A photo at working size, the arg-max class at each map position, where those positions lie, and each
    3x3 cell's leading label with its confidence, as the index stores it (`leading_labels`)."""

    pixels: np.ndarray
    class_map: np.ndarray
    probabilities: np.ndarray
    geometry: Geometry
    cells: tuple[Prediction, ...]


def classify(model: Backbone, photo: np.ndarray, size: int, k: int = 5) -> list[Prediction]:
    """The ``k`` most likely classes of a photo, with the confidence the index gives them (`indexer.regions`,
    `indexer.calibration`): the whole photo at working size ``size``, each class read in its best cell."""
    check_size(model, size)
    shape = images.working_shape(photo.shape[0], photo.shape[1], size, total_stride(model.layers))
    seen = views(model, images.resize(photo, shape)[None], Poolings(model))
    evidence = regions.cell_evidence(seen)[0][0].max(axis=0)
    cal = calibration.for_model(model.name)
    confidence = np.array([cal.probability(float(e), (c,)) for c, e in enumerate(evidence)])
    order = np.lexsort((-evidence, -confidence))[:k]
    return [Prediction(int(c), float(confidence[c])) for c in order]


class Poolings:
    """Pooling weights of one backbone per input shape and kind, each computed once."""

    def __init__(self, model: Backbone):
        self.model = model
        self.cache: dict[tuple[tuple[int, int], bool], regions.Pooling] = {}

    def __call__(self, shape: tuple[int, int], pooled: bool) -> regions.Pooling:
        key = (tuple(shape), pooled)
        if key not in self.cache:
            self.cache[key] = regions.pooling(self.model.geometry(key[0]), pooled)
        return self.cache[key]


def views(model: Backbone, batch: np.ndarray, poolings: Poolings) -> list[regions.View]:
    """Run ``model`` over a batch of one working shape at every scale of `regions.SCALES`."""
    return [
        regions.View(model.class_map(pixels), poolings(pixels.shape[1:3], pooled))
        for pixels, pooled in view_inputs(model.layers, batch)
    ]


def view_inputs(layers, batch: np.ndarray) -> Iterator[tuple[np.ndarray, bool]]:
    """The network inputs of `views`: ``batch`` resized to each scale of `regions.SCALES`, and whether that
    view is pooled."""
    stride, smallest = total_stride(layers), minimum_input(layers)
    for factor, pooled in regions.SCALES:
        pixels = batch
        if factor != 1.0:
            shape = images.scaled_shape(batch.shape[1:3], factor, stride, smallest)
            pixels = np.stack([images.resize(photo, shape) for photo in batch])
        yield pixels, pooled


def check_size(model: Backbone, size: int) -> None:
    """Refuse a working size the network cannot produce a class map for."""
    check_working_size(model.name, model.layers, size)


def check_working_size(name: str, layers, size: int) -> None:
    """`check_size` before the network is loaded, from its layers; above `MAX_WORKING_SIZE` too."""
    smallest = minimum_input(layers)
    if size < smallest:
        raise WorkingSizeError(f"--size must be at least {smallest} for {name}, got {size}")
    if size > MAX_WORKING_SIZE:
        raise WorkingSizeError(f"--size must be at most {MAX_WORKING_SIZE}, the largest working size, got {size}")


def leading_labels(cell_labels: Iterable[regions.CellLabel], cal: calibration.Calibration) -> tuple[Prediction, ...]:
    """Each cell's first label as `imgidx show` reads the index: the stored class of highest confidence
    (then evidence, then class number)."""
    best: dict[int, tuple[tuple[float, float, int], Prediction]] = {}
    for label in cell_labels:
        confidence = cal.probability(label.score, (label.class_id,))
        key = (-confidence, -label.score, label.class_id)
        if label.cell not in best or key < best[label.cell][0]:
            best[label.cell] = (key, Prediction(label.class_id, confidence))
    return tuple(best[cell][1] for cell in range(regions.CELLS))


def segment(model: Backbone, photo: np.ndarray, size: int) -> Segmentation:
    """Run ``model`` fully convolutionally over ``photo`` resized to shorter side ``size``: its class map,
    and the cells' labels from the same views the indexer runs (`regions.SCALES`)."""
    check_size(model, size)
    shape = images.working_shape(photo.shape[0], photo.shape[1], size, total_stride(model.layers))
    pixels = images.resize(photo, shape)
    seen = views(model, pixels[None], Poolings(model))
    cal = calibration.for_model(model.name)
    stored = regions.score_batch(seen, cal)[0]
    probabilities = regions.softmax(seen[0].logits[0])
    return Segmentation(
        pixels, probabilities.argmax(axis=-1), probabilities, model.geometry(shape),
        leading_labels(stored.cell_labels, cal),
    )
