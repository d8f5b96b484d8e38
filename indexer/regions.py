"""Class map + geometry -> the per-cell and per-image scores the index stores (pure numpy).

For one image with class logits ``L[p, k]`` at map positions ``p`` and the cell weights ``W[p, c]`` of
`Geometry.cell_weights` (the share of cell ``c``'s area that position ``p`` owns, by where its receptive
field is centred in the image; each cell's weights sum to 1):

- ``P[p, k] = softmax_k L[p, k]``, the class probabilities at each position;
- cell score ``S[c, k] = sum_p W[p, c] * P[p, k]``, the area-weighted mean probability of class ``k`` over
  cell ``c``, in [0, 1]. Probabilities add, so a query may sum sibling classes (all 118 dog breeds) and
  apply its own threshold to the total;
- cell coverage ``C[c, k] = sum_p W[p, c] * [argmax_k' P[p, k'] = k]``, the share of the cell's area whose
  top class is ``k``;
- image score ``s[k] = mean_p P[p, k]`` and image share ``h[k]``, the fraction of positions whose top class
  is ``k``.

Stored: per cell the `CELL_TOP_K` classes of highest score, per image the `IMAGE_TOP_K`, each only if its
score reaches `SCORE_FLOOR` (ten times the uniform 1/1000), except that the best class of every cell and
image is always kept, so the grid is never blank. The classes left out hold little probability each; a
summed query score is therefore a slight underestimate, never an overestimate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from indexer.geometry import GRID
from indexer.inference import softmax

CELLS = GRID * GRID
CELL_TOP_K = 10
IMAGE_TOP_K = 20
SCORE_FLOOR = 0.01


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


class Regions(NamedTuple):
    """What the index stores for one image."""

    image_labels: list[ImageLabel]
    cell_labels: list[CellLabel]


def _keep(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``scores (..., K)``: the ``top_k`` best classes, best first, and how many to keep.

    A class is kept when its score reaches the floor; the best one always is.
    """
    k = min(top_k, scores.shape[-1])
    candidates = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    order = np.take_along_axis(
        candidates, np.argsort(-np.take_along_axis(scores, candidates, -1), axis=-1, kind="stable"), -1
    )
    counts = np.maximum(1, (np.take_along_axis(scores, order, -1) >= SCORE_FLOOR).sum(axis=-1))
    return order, counts


def score_batch(logits: np.ndarray, weights: np.ndarray) -> list[Regions]:
    """Scores for each image of a batch: ``logits (N, h, w, K)``, ``weights (h, w, 9)`` from the geometry."""
    n, h, w, k = logits.shape
    if weights.shape != (h, w, CELLS):
        raise ValueError(f"cell weights of shape {weights.shape} do not fit a {h}x{w} class map")
    positions = h * w
    probs = softmax(logits.reshape(n, positions, k).astype(np.float32, copy=False))
    cell_w = weights.reshape(positions, CELLS).astype(np.float64)
    cell_scores = cell_w.T.astype(np.float32) @ probs  # (n, 9, k)
    image_scores = probs.mean(axis=1)  # (n, k)
    top = probs.argmax(axis=-1)  # (n, positions)
    flat_top = (top + k * np.arange(n)[:, None]).ravel()
    coverage = np.stack(
        [np.bincount(flat_top, weights=np.tile(cell_w[:, c], n), minlength=n * k).reshape(n, k) for c in range(CELLS)],
        axis=1,
    )  # (n, 9, k)
    share = np.bincount(flat_top, minlength=n * k).reshape(n, k) / positions
    cell_order, cell_counts = _keep(cell_scores, CELL_TOP_K)
    image_order, image_counts = _keep(image_scores, IMAGE_TOP_K)
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


def score_map(logits: np.ndarray, weights: np.ndarray) -> Regions:
    """Scores for one image: ``logits (h, w, K)``."""
    return score_batch(logits[None], weights)[0]
