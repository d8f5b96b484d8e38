"""Running a backbone the seed's two ways: one label per photo, and a coarse class map per photo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer import images, labels
from indexer.errors import WorkingSizeError
from indexer.geometry import Geometry, minimum_input, total_stride
from indexer.models.base import Backbone


@dataclass(frozen=True)
class Prediction:
    """One class with its probability."""

    class_index: int
    probability: float

    @property
    def name(self) -> str:
        return labels.class_name(self.class_index)


@dataclass(frozen=True)
class Segmentation:
    """A photo at working size, the arg-max class at each map position, and where those positions lie."""

    pixels: np.ndarray
    class_map: np.ndarray
    probabilities: np.ndarray
    geometry: Geometry


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities along the last axis, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int) -> list[Prediction]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [Prediction(int(i), float(probabilities[i])) for i in order]


def classify(model: Backbone, photos: list[np.ndarray], k: int = 5) -> list[list[Prediction]]:
    """Top-``k`` classes per photo from slim's evaluation crop (shorter side 256, central 224).

    The image-level logits are the mean of the class map, which for VGG-16 at 224 px is its single position.
    """
    crops = np.stack([images.central_crop_for_classification(photo) for photo in photos])
    logits = model.class_map(crops).mean(axis=(1, 2))
    return [top_k(row, k) for row in softmax(logits)]


def check_size(model: Backbone, size: int) -> None:
    """Refuse a working size the network cannot produce a class map for."""
    smallest = minimum_input(model.layers)
    if size < smallest:
        raise WorkingSizeError(f"--size must be at least {smallest} for {model.name}, got {size}")


def segment(model: Backbone, photo: np.ndarray, size: int) -> Segmentation:
    """Run ``model`` fully convolutionally over ``photo`` resized to shorter side ``size``."""
    check_size(model, size)
    shape = images.working_shape(photo.shape[0], photo.shape[1], size, total_stride(model.layers))
    pixels = images.resize(photo, shape)
    probabilities = softmax(model.class_map(pixels[None])[0])
    return Segmentation(pixels, probabilities.argmax(axis=-1), probabilities, model.geometry(shape))
