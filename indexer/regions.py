"""Class maps + geometry -> the per-cell and per-image evidence the index stores (pure numpy).

A photo is run at its working size and again at `SCALES`' coarser size. In each such *view* (class logits
``L[p, k]`` at map positions ``p``) a cell ``c`` is seen two ways:

- ``M[c, k] = sum_p A[p, c] * softmax_k L[p, k]``: the positions' own class probabilities, weighted by the
  share of the cell each owns (`Geometry.cell_weights`). Sharp in place, but one position sees only part
  of an object, and its softmax competes with every neighbour's content;
- ``V[c, k] = softmax_k (sum_p B[p, c] * L[p, k])``: the cell classified as a whole, logits pooled over its
  window (`Geometry.window_weights`: the cell, grown by the view's margin on each side), which is what the
  network was trained to do: one average of features over a region, then the classifier.

The evidence ``E[c, k]`` is the mean of ``(M + V) / 2`` over the views. On `bench/retrieval_quality.py`'s
annotated photos the fine view (working size, the cell alone) finds objects pasted into a cell, and the
coarse one (three quarters of the size, half a cell of context around it) finds more in everyday scenes;
their mean keeps most of both. ``E`` is a probability mass, so a label's evidence is the sum over its
classes (`indexer.calibration` turns it into the confidence people read).

Stored per cell: the `CELL_TOP_K` classes of highest evidence relative to their prior (the calibration's
order, so a rare class that clearly stands out is kept), each only if its evidence reaches `SCORE_FLOOR`,
except that the best class of every cell is always kept. Per image: the `IMAGE_TOP_K` classes by the same
order, with their best cell's evidence (what a query for the class anywhere reads) and ``share``, the
fraction of the fine view's positions whose top class it is. Cells also store ``coverage``, the share of
the cell's area whose top class (fine view) it is. The classes left out hold little evidence each; a
label's summed evidence is therefore a slight underestimate, never an overestimate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from indexer.calibration import Calibration
from indexer.geometry import GRID, Geometry

CELLS = GRID * GRID
CELL_TOP_K = 12
IMAGE_TOP_K = 20
SCORE_FLOOR = 0.005
#: The views of a photo: (size relative to the working size, window margin in cells). Measured in
#: bench/retrieval_quality.py against single views at 224-448 px and margins 0-0.5.
SCALES = ((1.0, 0.0), (0.75, 0.5))


class ImageLabel(NamedTuple):
    """One row of ``image_labels`` (without the image)."""

    class_id: int
    score: float
    share: float


class CellLabel(NamedTuple):
    """One row of ``cell_labels`` (without the image)."""

    cell: int
    class_id: int
    score: float
    coverage: float


class Pooling(NamedTuple):
    """The two weightings of map positions for one input shape and margin: ``(h, w, 9)`` each."""

    cell: np.ndarray
    window: np.ndarray


def pooling(geometry: Geometry, margin: float) -> Pooling:
    return Pooling(geometry.cell_weights(), geometry.window_weights(margin))


class View(NamedTuple):
    """One scale of a batch: its class maps ``(n, h, w, K)`` and how their positions pool into cells."""

    logits: np.ndarray
    pooling: Pooling


class Regions(NamedTuple):
    """What the index stores for one image."""

    image_labels: list[ImageLabel]
    cell_labels: list[CellLabel]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities along the last axis, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _keep(order_by: np.ndarray, evidence: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``order_by (..., K)``: the ``top_k`` best classes, best first, and how many to keep.

    A class is kept when its ``evidence`` reaches the floor; the best one always is.
    """
    k = min(top_k, order_by.shape[-1])
    candidates = np.argpartition(-order_by, k - 1, axis=-1)[..., :k]
    order = np.take_along_axis(
        candidates, np.argsort(-np.take_along_axis(order_by, candidates, -1), axis=-1, kind="stable"), -1
    )
    counts = np.maximum(1, (np.take_along_axis(evidence, order, -1) >= SCORE_FLOOR).sum(axis=-1))
    return order, counts


def view_evidence(view: View) -> tuple[np.ndarray, np.ndarray]:
    """``(M + V) / 2`` of one view, ``(n, 9, K)`` (module docstring), and its positions' softmax."""
    n, h, w, k = view.logits.shape
    if view.pooling.cell.shape != (h, w, CELLS):
        raise ValueError(f"cell weights of shape {view.pooling.cell.shape} do not fit a {h}x{w} class map")
    flat = view.logits.reshape(n, h * w, k).astype(np.float32, copy=False)
    probs = softmax(flat)
    owned = view.pooling.cell.reshape(h * w, CELLS).T.astype(np.float32) @ probs
    windowed = softmax(view.pooling.window.reshape(h * w, CELLS).T.astype(np.float32) @ flat)
    return (owned + windowed) / 2, probs


def cell_evidence(views: list[View]) -> tuple[np.ndarray, np.ndarray]:
    """``E (n, 9, K)`` of a batch seen in ``views`` (the fine one first), and the fine view's softmax."""
    seen = [view_evidence(view) for view in views]
    return sum(evidence for evidence, _ in seen) / len(seen), seen[0][1]


def score_batch(views: list[View], calibration: Calibration) -> list[Regions]:
    """What the index stores for each image of a batch seen in ``views`` (`SCALES`, the fine one first)."""
    n, h, w, k = views[0].logits.shape
    positions = h * w
    weights = views[0].pooling
    cell_scores, probs = cell_evidence(views)  # (n, 9, k), (n, positions, k)
    image_scores = cell_scores.max(axis=1)  # (n, k)
    relevance = np.asarray(calibration.priors, dtype=np.float32) ** -calibration.beta
    cell_w = weights.cell.reshape(positions, CELLS).astype(np.float64)
    top = probs.argmax(axis=-1)  # (n, positions)
    flat_top = (top + k * np.arange(n)[:, None]).ravel()
    coverage = np.stack(
        [np.bincount(flat_top, weights=np.tile(cell_w[:, c], n), minlength=n * k).reshape(n, k) for c in range(CELLS)],
        axis=1,
    )  # (n, 9, k)
    share = np.bincount(flat_top, minlength=n * k).reshape(n, k) / positions
    cell_order, cell_counts = _keep(cell_scores * relevance, cell_scores, CELL_TOP_K)
    image_order, image_counts = _keep(image_scores * relevance, image_scores, IMAGE_TOP_K)
    results = []
    for i in range(n):
        image_labels = [
            ImageLabel(int(c), float(image_scores[i, c]), float(share[i, c]))
            for c in image_order[i, : image_counts[i]]
        ]
        cell_labels = [
            CellLabel(cell, int(c), float(cell_scores[i, cell, c]), float(coverage[i, cell, c]))
            for cell in range(CELLS)
            for c in cell_order[i, cell, : cell_counts[i, cell]]
        ]
        results.append(Regions(image_labels, cell_labels))
    return results
