"""What NanoDet-m is, without TensorFlow or OpenVINO: its input, its levels, its files.

The network (`indexer.models.nanodet`), its OpenVINO conversion (`indexer.runtime.openvino_detector`) and the
decoding of its outputs into boxes (`indexer.objects`) all build on these facts, so they live below all three.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer import images
from indexer.errors import ImgidxError
from indexer.labels import COCO_CLASSES

MODEL_NAME = "nanodet-m"
#: The network's input side, in pixels; the photo is stretched to it.
INPUT_SIZE = 416
#: The levels' strides, finest first, in the order of the network's outputs.
STRIDES = (8, 16, 32)
#: Position centres sit this share of a stride in from their cell's corner.
CENTRE_OFFSET = 0.5
#: A side's distance is the expectation over bins 0..REG_MAX (in strides).
REG_MAX = 10
BINS = REG_MAX + 1
SIDES = 4
NUM_CLASSES = len(COCO_CLASSES)

#: The package data folder of the model and its graph file (the weights file, ``nanodet.bin``, beside it).
DATA_FOLDER = "nanodet"
GRAPH_FILE = "nanodet.json"


class ObjectDetectorError(ImgidxError):
    """The object detector's model files are missing or cannot be loaded."""


def graph_path() -> Path:
    """The shipped graph file (package data)."""
    return Path(str(resources.files("indexer") / "data" / DATA_FOLDER / GRAPH_FILE))


def model_input(photos: Sequence[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """RGB ``uint8`` photos of any sizes stretched to ``size`` square, as one batch ``(N, size, size, 3)``."""
    if not len(photos):
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([images.resize(np.asarray(photo), (size, size)) for photo in photos])
