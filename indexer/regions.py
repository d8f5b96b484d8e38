"""Class maps + geometry -> the per-cell and per-image evidence the index stores (pure numpy).

A photo is run at its working size and again at a coarser size (`SCALES`). In each such *view* (class
logits ``L[p, k]`` at map positions ``p``) a cell ``c`` can be seen two ways:

- owned, ``M[c, k] = sum_p A[p, c] * softmax_k L[p, k]``: the positions' own class probabilities, weighted
  by the share of the cell each owns (`Geometry.cell_weights`). One position sees only part of an object,
  and its softmax competes with everything else it sees;
- pooled, ``V[c, k] = softmax_k (sum_p B[p, c] * L[p, k])``: the cell classified as a whole, its logits
  averaged over it (`Geometry.window_weights`), which is what the network was trained to do: one average of
  features over a region, then the classifier.

The evidence ``E[c, k]`` is the mean of these parts: owned and pooled at the working size, owned at three
quarters of it. On `bench/retrieval_quality.py`'s annotated photos the coarser view finds more in everyday
scenes, where objects are often large and the network was trained on whole objects, while the pooled part
keeps objects in their cells (a pooled part with context around the cell found more in scenes still, but
spread objects into the cells next to them). Last, a class's evidence in a cell is scaled down where it
falls below `PEAK_SHARE` of its best cell in the photo (in proportion), since a position's receptive field
reaches past its cell and an object leaks a little of itself into the cells around it. ``E`` stays a
probability mass, so a label's evidence is the sum over its classes (`indexer.calibration` turns it into
the confidence people read).

Stored per cell: the `CELL_TOP_K` classes of highest evidence relative to their prior (the calibration's
order, so a rare class that clearly stands out is kept), each only if its evidence reaches `SCORE_FLOOR`,
except that the best class of every cell is always kept. Per image: the `IMAGE_TOP_K` classes by the same
order, with their best cell's evidence (what a query for the class anywhere reads) and ``share``, the
fraction of the working-size view's positions whose top class it is. Cells also store ``coverage``, the
share of the cell's area whose top class (same view) it is. The classes left out hold little evidence
each; a label's summed evidence is therefore a slight underestimate, never an overestimate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from indexer import boxes as box_rules
from indexer.boxes import SCORE_FLOOR, Box
from indexer.calibration import Calibration
from indexer.geometry import GRID, Geometry

CELLS = GRID * GRID
CELL_TOP_K = 12
IMAGE_TOP_K = 20
#: The views of a photo: (size relative to the working size, whether its pooled part counts). Measured in
#: bench/retrieval_quality.py against single views at 224-448 px, windows with context, and other mixes.
SCALES = ((1.0, True), (0.75, False))
#: The pooled part's window: the cell alone (context around it moved objects into neighbouring cells).
POOLED_MARGIN = 0.0
#: A class counts fully in a cell from this share of its best cell's evidence up (measured: 0.3-0.7).
PEAK_SHARE = 0.3


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
    """The weightings of map positions for one input shape, ``(h, w, 9)``: owned, and pooled (None: not
    counted)."""

    cell: np.ndarray
    window: np.ndarray | None


def pooling(geometry: Geometry, pooled: bool) -> Pooling:
    return Pooling(geometry.cell_weights(), geometry.window_weights(POOLED_MARGIN) if pooled else None)


class View(NamedTuple):
    """One scale of a batch: its class maps ``(n, h, w, K)`` and how their positions pool into cells."""

    logits: np.ndarray
    pooling: Pooling


class TextLine(NamedTuple):
    """One row of ``texts`` (without the image and its number): a line read in the photo (`indexer.text`),
    its box in photo pixels, the cells it occupies (a 9-bit mask, `indexer.boxes.occupied`) and its words as
    search compares them (`indexer.words.searchable`)."""

    left: float
    top: float
    right: float
    bottom: float
    confidence: float
    cells: int
    content: str
    words: tuple[str, ...]


class Regions(NamedTuple):
    """What the index stores for one image; ``boxes`` are the detectors' (`indexer.boxes.Box`: faces and
    objects, in photo pixels), best first, when the index looks for them; ``texts`` the lines of text read
    in it (`TextLine`), when the index reads text."""

    image_labels: list[ImageLabel]
    cell_labels: list[CellLabel]
    boxes: tuple[Box, ...] = ()
    texts: tuple[TextLine, ...] = ()


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


def view_parts(view: View) -> tuple[list[np.ndarray], np.ndarray]:
    """The parts ``M`` (and ``V``) of one view, ``(n, 9, K)`` each (module docstring), and its softmax."""
    n, h, w, k = view.logits.shape
    if view.pooling.cell.shape != (h, w, CELLS):
        raise ValueError(f"cell weights of shape {view.pooling.cell.shape} do not fit a {h}x{w} class map")
    flat = view.logits.reshape(n, h * w, k).astype(np.float32, copy=False)
    probs = softmax(flat)
    parts = [view.pooling.cell.reshape(h * w, CELLS).T.astype(np.float32) @ probs]
    if view.pooling.window is not None:
        parts.append(softmax(view.pooling.window.reshape(h * w, CELLS).T.astype(np.float32) @ flat))
    return parts, probs


def cell_evidence(views: list[View]) -> tuple[np.ndarray, np.ndarray]:
    """``E (n, 9, K)`` of a batch seen in ``views`` (the working size first), and that view's softmax."""
    seen = [view_parts(view) for view in views]
    parts = [part for own, _ in seen for part in own]
    evidence = sum(parts) / len(parts)
    peak = np.maximum(evidence.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return evidence * np.minimum(1.0, evidence / peak / PEAK_SHARE), seen[0][1]


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


def with_boxes(regions: Regions, boxes, width: int, height: int) -> Regions:
    """``regions`` with the detectors' ``boxes`` (best first, `indexer.boxes.best_first`) and, for each class
    they hold, its rows (`indexer.boxes.cell_scores`): every cell a class reaches from `SCORE_FLOOR` up, and
    for the photo its best cell's score and the share its boxes cover."""
    boxes = box_rules.best_first(boxes)
    if not boxes:
        return regions._replace(boxes=())
    image_labels, cell_labels = list(regions.image_labels), list(regions.cell_labels)
    for class_id, found in box_rules.by_class(boxes).items():
        scores, coverage = box_rules.cell_scores(found, width, height)
        cell_labels += [CellLabel(c, class_id, float(scores[c]), float(coverage[c]))
                        for c in range(CELLS) if scores[c] >= SCORE_FLOOR]
        image_labels.append(ImageLabel(class_id, float(scores.max()), float(box_rules.photo_share(found, width, height))))
    return regions._replace(image_labels=image_labels, cell_labels=cell_labels, boxes=boxes)


def with_text(regions: Regions, lines, width: int, height: int) -> Regions:
    """``regions`` with the lines of text read in the photo (`indexer.text.Line`: box, text, confidence), each
    with the cells its box occupies by the rule of every box (`indexer.boxes.occupied`) and its words."""
    from indexer.geometry import cell_bounds
    from indexer.words import searchable

    cells = cell_bounds(width, height)
    rows = []
    for line in lines:
        box = Box(0, line.left, line.top, line.right, line.bottom, line.confidence)
        where, _ = box_rules.occupied(box, cells)
        mask = sum(1 << int(c) for c in np.flatnonzero(where))
        rows.append(TextLine(float(line.left), float(line.top), float(line.right), float(line.bottom),
                             float(line.confidence), mask, line.text, tuple(searchable(line.text))))
    return regions._replace(texts=tuple(rows))
