"""COCO objects: NanoDet-m run on photos stretched to its input, its outputs decoded into boxes.

**Geometry.** The photo is stretched (not letterboxed) to `INPUT_SIZE` x `INPUT_SIZE`. The network answers
at the positions of three levels, strides `STRIDES` (8, 16, 32: grids of 52, 26 and 13 a side at 416).
Position ``(row i, column j)`` of a level of stride ``s`` sits at ``((j + CENTRE_OFFSET) * s,
(i + CENTRE_OFFSET) * s)`` in input pixels: half a stride in from the corner, where NanoDet-m's GFL head
puts its centre points (``(arange(w) + 0.5) * stride``; NanoDet-Plus moved them to the corner, which here
drops the boxes' mean IoU with true ones from 0.65 to 0.54).
At each position it gives `NUM_CLASSES` class probabilities (the sigmoid is in the graph) and, for each
side (left, top, right, bottom), logits over `BINS` bins (Generalized Focal Loss): the softmax's
expectation over bins ``0..REG_MAX``, times the stride, is the distance from the position to that side.
Decoding is numpy, and only for the positions with some class at ``min_score`` or more.

**Suppression.** Per class, greedy non-maximum suppression at IoU `SUPPRESSION_IOU` over the boxes of
`MIN_SCORE` and up, at most `MAX_BOXES` kept per photo (NanoDet's own test settings). `MIN_SCORE` is low on
purpose: what a query counts as found is decided later, from these scores.

**Runtimes.** The network is defined once, in TensorFlow (`indexer.models.nanodet`); it runs converted by
OpenVINO (`indexer.runtime.openvino_detector`; the conversion is shipped, else cached) at `OPENVINO_PRECISION`,
or on TensorFlow where OpenVINO is missing.
Neither TensorFlow nor OpenVINO is imported before a detector is built (`load_detector`). The model's facts
(input, levels, files) are `indexer.models.nanodet_spec`'s, below the network, its conversion and this module.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, Sequence

import numpy as np

from indexer.boxes import Box
from indexer.labels import object_class
# The model's facts, named here too: the detector's callers read them as ``objects.INPUT_SIZE`` and so on.
from indexer.models.nanodet_spec import (
    BINS, CENTRE_OFFSET, INPUT_SIZE, MODEL_NAME, NUM_CLASSES, REG_MAX, SIDES, STRIDES, ObjectDetectorError,
    graph_path, model_input)

__all__ = [
    "AUTO", "BINS", "CENTRE_OFFSET", "CLASS_SPACING", "INPUT_SIZE", "MAX_BOXES", "MAX_CANDIDATES", "MIN_SCORE",
    "MODEL_NAME", "NUM_CLASSES", "OPENVINO", "OPENVINO_PRECISION", "REG_MAX", "SIDES", "STRIDES",
    "SUPPRESSION_IOU", "TF", "Detectors", "ObjectDetector", "ObjectDetectorError", "build_detector", "candidates",
    "centres", "distances", "graph_path", "load_detector", "model_input", "openvino_installed",
    "photo_boxes", "resolve", "suppress",
]

#: The lowest class probability returned (NanoDet's own test threshold): the scoring that reads the boxes
#: sets the threshold a query uses.
MIN_SCORE = 0.05
#: Boxes of one class overlapping a better one by more than this (IoU) are dropped (NanoDet's setting).
SUPPRESSION_IOU = 0.6
#: At most this many boxes per photo, best first (NanoDet's ``max_num``).
MAX_BOXES = 100
#: At most this many (position, class) candidates per photo go into suppression, the best ones: at
#: `MIN_SCORE` most photos have about that many, and the rest, the lowest, could only fill the last of
#: `MAX_BOXES` places.
MAX_CANDIDATES = 1000

TF, OPENVINO = "tf", "openvino"
AUTO = "auto"
#: OpenVINO's precision, chosen by measurement (`bench/objects.py`, bench/RESULTS.md): against TensorFlow
#: fp32 on the 126 dev photos, bf16 keeps 99.6% of the boxes from 0.3 at IoU > 0.9 (scores within 0.002 on
#: average) for 0.55-0.7x TensorFlow's CPU time; int8 runs in ~0.4x but keeps only 90-92% (every NNCF recipe
#: tried), short of the 95% asked; fp32 gives TensorFlow's boxes exactly, at TensorFlow's cost.
OPENVINO_PRECISION = "bf16"


# --- Geometry and decoding (numpy) -------------------------------------------------------------------------


def centres(size: int = INPUT_SIZE, strides: Sequence[int] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """The positions of every level in output order: centres ``(A, 2)`` as (x, y) in input pixels, and each
    position's stride ``(A,)``."""
    points, steps = [], []
    for stride in strides:
        cells = size // stride
        offsets = (np.arange(cells, dtype=np.float32) + CENTRE_OFFSET) * stride
        ys, xs = np.meshgrid(offsets, offsets, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full(cells * cells, stride, np.float32))
    return np.concatenate(points), np.concatenate(steps)


def distances(distributions: np.ndarray) -> np.ndarray:
    """``(K, 4 * BINS)`` logits -> ``(K, 4)`` expected distances in strides (left, top, right, bottom)."""
    logits = distributions.reshape(-1, SIDES, BINS).astype(np.float32)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ np.arange(BINS, dtype=np.float32)


def candidates(scores: np.ndarray, distributions: np.ndarray, points: np.ndarray, steps: np.ndarray,
               min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One photo's ``(position, class)`` pairs scoring ``min_score`` or more (the best `MAX_CANDIDATES`):
    boxes ``(K, 4)`` (left, top, right, bottom in input pixels), classes ``(K,)`` and scores ``(K,)``,
    decoding the boxes of those positions alone."""
    position, klass = np.nonzero(scores >= min_score)
    score = scores[position, klass]
    if len(score) > MAX_CANDIDATES:
        best = np.argpartition(-score, MAX_CANDIDATES)[:MAX_CANDIDATES]
        position, klass, score = position[best], klass[best], score[best]
    used, which = np.unique(position, return_inverse=True)
    reach = distances(distributions[used]) * steps[used, None]
    boxes = np.concatenate([points[used] - reach[:, :2], points[used] + reach[:, 2:]], axis=1)
    return boxes[which].reshape(-1, 4), klass, score


#: Boxes of class k are shifted by k times this in `suppress`: wider than any decoded box can reach
#: (from -REG_MAX strides of the coarsest level before the input to as far past it), so classes never meet.
CLASS_SPACING = 2.0 * (INPUT_SIZE + 2 * REG_MAX * max(STRIDES))


def suppress(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, threshold: float = SUPPRESSION_IOU,
             limit: int = MAX_BOXES) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression within each class, best first (at most
    ``limit``): a box is dropped when it overlaps a better box of its class by more than ``threshold`` (IoU).

    One greedy pass serves every class: each box is shifted by its class times `CLASS_SPACING`, so boxes of
    two classes never overlap (torchvision's ``batched_nms``), and the pass stops at ``limit`` boxes. With
    ~1000 candidates a photo at `MIN_SCORE`, this took 1.6 ms a photo, a loop per class 3.7-5.4 ms.
    """
    order = np.argsort(-scores, kind="stable")
    shifted = boxes[order].astype(np.float64) + (classes[order].astype(np.float64) * CLASS_SPACING)[:, None]
    left, top, right, bottom = shifted.T
    area = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    remaining = np.arange(len(order))
    kept: list[int] = []
    while len(remaining) and len(kept) < limit:
        best, rest = remaining[0], remaining[1:]
        kept.append(best)
        width = np.clip(np.minimum(right[best], right[rest]) - np.maximum(left[best], left[rest]), 0, None)
        height = np.clip(np.minimum(bottom[best], bottom[rest]) - np.maximum(top[best], top[rest]), 0, None)
        inter = width * height
        # inter / union <= threshold, without dividing (an empty pair has IoU 0 and is kept)
        remaining = rest[inter <= threshold * (area[best] + area[rest] - inter)]
    return order[np.array(kept, dtype=np.int64)]


def photo_boxes(scores: np.ndarray, distributions: np.ndarray, photo_size: tuple[int, int],
                min_score: float = MIN_SCORE, size: int = INPUT_SIZE) -> list[Box]:
    """One photo's network outputs -> its boxes, best first, in pixels of a photo of ``photo_size =
    (width, height)``, each side clipped to the photo."""
    points, steps = _centres(size)
    boxes, classes, score = candidates(scores, distributions, points, steps, min_score)
    kept = suppress(boxes, classes, score)
    width, height = photo_size
    scale = np.array([width / size, height / size] * 2)
    placed = np.clip(boxes[kept], 0, size) * scale
    return [Box(object_class(int(k)), *map(float, box), float(s))
            for box, k, s in zip(placed, classes[kept], score[kept]) if box[2] > box[0] and box[3] > box[1]]


@functools.lru_cache(maxsize=None)
def _centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    return centres(size)


# --- Runtimes ------------------------------------------------------------------------------------------------


def openvino_installed() -> bool:
    from indexer.runtime import machine

    return machine.openvino_installed()


def resolve(runtime: str = AUTO, precision: str = AUTO) -> tuple[str, str]:
    """``(runtime, precision)`` the detector runs at. ``auto`` is OpenVINO where it is installed (the
    index's ``--runtime`` otherwise decides), else TensorFlow; TensorFlow runs fp32; OpenVINO's ``auto`` is
    `OPENVINO_PRECISION`, the measured choice, where the CPU has the instructions for it (int8 dot products,
    bf16), else fp32."""
    from indexer.runtime import machine as runtimes

    if runtime not in (AUTO, TF, OPENVINO):
        raise ValueError(f"runtime must be one of auto, tf, openvino, got {runtime!r}")
    if runtime == AUTO:
        runtime = OPENVINO if openvino_installed() else TF
    if runtime == TF:
        if precision not in (AUTO, "fp32"):
            raise ValueError(f"the object detector runs fp32 on TensorFlow, not {precision}")
        return TF, "fp32"
    runtimes.require_openvino()
    if precision != AUTO:
        if precision not in ("fp32", "bf16", runtimes.INT8):
            raise ValueError(f"precision must be one of auto, fp32, bf16, int8, got {precision!r}")
        return OPENVINO, precision
    from indexer.models.base import cpu_has_bf16

    usable = {runtimes.INT8: runtimes.cpu_has_int8_dot(), "bf16": cpu_has_bf16(), "fp32": True}
    return OPENVINO, OPENVINO_PRECISION if usable[OPENVINO_PRECISION] else "fp32"


class ObjectDetector:
    """NanoDet-m on one runtime. `detect` runs a batch of photos in one model call; it may be called from
    several threads (one batch runs at a time per detector: an OpenVINO request is not shared)."""

    def __init__(self, network: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], runtime: str,
                 precision: str, quantization: str = ""):
        self.network = network
        self.runtime = runtime
        self.precision = precision
        #: The int8 model's id (calibration photos and recipe), empty for other precisions.
        self.quantization = quantization
        self.lock = threading.Lock()

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's outputs for RGB ``uint8`` photos already at the input size ``(N, 416, 416, 3)``:
        scores ``(N, A, 80)`` and box distributions ``(N, A, 44)``."""
        with self.lock:
            return self.network(batch)

    def detect(self, photos: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]] | None = None,
               min_score: float = MIN_SCORE) -> list[list[Box]]:
        """Objects in RGB photos (oriented; any sizes), one list of boxes per photo, best first. A photo's
        boxes are in pixels of a photo of ``sizes[i] = (width, height)`` (default: its pixels' own size, e.g.
        where they were decoded reduced)."""
        if sizes is not None and len(sizes) != len(photos):
            raise ValueError(f"{len(photos)} photos but {len(sizes)} sizes")
        if not len(photos):
            return []
        scores, distributions = self.raw(model_input(photos))
        sizes = sizes or [(photo.shape[1], photo.shape[0]) for photo in photos]
        return [photo_boxes(s, d, size, min_score) for s, d, size in zip(scores, distributions, sizes)]


#: The networks built in this process, by (runtime, precision, threads): each detector handed out wraps one.
_networks: dict[tuple[str, str, int | None], tuple[Callable[[], Callable], str]] = {}
_networks_lock = threading.Lock()


def _build(runtime: str, precision: str, threads: int | None,
           on_build: Callable[[str], None] | None) -> tuple[Callable, str]:
    """A runner of the process's network for ``(runtime, precision, threads)`` (built on first use), and the
    int8 model's id. TensorFlow's function is shared as it is (it may run on several threads); OpenVINO's
    compiled model gives each runner an inference request of its own."""
    key = (runtime, precision, threads if runtime == OPENVINO else None)
    with _networks_lock:
        if key not in _networks:
            if runtime == TF:
                network = _tensorflow_network()
                _networks[key] = (lambda: network, "")
            else:
                from indexer.runtime import openvino_detector

                compiled, quantization = openvino_detector.load(precision, threads=threads, on_build=on_build)
                _networks[key] = (compiled.runner, quantization)
        runner, quantization = _networks[key]
    return runner(), quantization


def _tensorflow_network():
    """NanoDet in TensorFlow, whose start-up chatter is hidden as for the backbones."""
    import os

    from indexer.models import TF_ERRORS_ONLY, TF_LOG_LEVEL_ENV, native_stderr_silenced

    os.environ.setdefault(TF_LOG_LEVEL_ENV, TF_ERRORS_ONLY)
    with native_stderr_silenced():
        from indexer.models.nanodet import NanoDet

        return NanoDet()


def build_detector(runtime: str = AUTO, precision: str = AUTO, threads: int | None = None,
                   on_build: Callable[[str], None] | None = None) -> ObjectDetector:
    """A new detector (`resolve` decides ``auto``), sharing the process's network for its runtime.
    ``threads``: OpenVINO's threads for the model (default: its own choice, or ``$TF_NUM_INTRAOP_THREADS``);
    TensorFlow's are the process's. ``on_build`` is told, in one line, when a model is converted or quantized
    (once; then cached)."""
    runtime, precision = resolve(runtime, precision)
    runner, quantization = _build(runtime, precision, threads, on_build)
    return ObjectDetector(runner, runtime, precision, quantization)


#: The detectors handed out in this process, by (runtime, precision, threads), kept for the next loader.
_built: dict[tuple[str, str, int | None], list[ObjectDetector]] = {}
_built_lock = threading.Lock()


class Detectors:
    """A loader handing out a different detector of this process at each call, building one when all the
    built ones are handed out: one call per thread that detects side by side, while a later loader hands the
    same ones out again. Picklable (Ray actors call it) when ``on_build`` is (see `build_detector`)."""

    def __init__(self, runtime: str = AUTO, precision: str = AUTO, threads: int | None = None,
                 on_build: Callable[[str], None] | None = None):
        self.runtime = runtime
        self.precision = precision
        self.threads = threads
        self.on_build = on_build
        self.handed = 0

    def __call__(self) -> ObjectDetector:
        key = (*resolve(self.runtime, self.precision), self.threads)
        with _built_lock:
            built = _built.setdefault(key, [])
            if len(built) <= self.handed:
                built.append(build_detector(*key, on_build=self.on_build))
            self.handed += 1
            return built[self.handed - 1]


def load_detector(runtime: str = AUTO, precision: str = AUTO, threads: int | None = None) -> ObjectDetector:
    """The process's first object detector for ``runtime``, built on first use (this imports TensorFlow, or
    OpenVINO)."""
    return Detectors(runtime, precision, threads)()
