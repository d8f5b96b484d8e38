"""Boxes from a detector: faces (`indexer.faces`) and COCO objects (`indexer.objects`) are one concept.

A box is a class id (`indexer.labels`: `FACE_CLASS`, or an object class from `OBJECT_CLASS_BASE`), its
corners in pixels of the photo as a person sees it (after EXIF orientation), and the detector's confidence.

This module holds what every use of boxes shares, so faces and objects are stored, scored, drawn and
labelled alike: the rule that turns one class's boxes into the 3x3 cell rows the index stores
(`cell_scores`), the order boxes are stored in (`best_first`), and the text and placement of a drawn box
(`label`, `overlay`). numpy is imported only by the scoring: `imgidx query` draws boxes without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

from indexer import calibration
from indexer.geometry import GRID, cell_bounds
from indexer.labels import FACE_CLASS, class_name

if TYPE_CHECKING:
    import numpy as np

CELLS = GRID * GRID


class Box(NamedTuple):
    """One detection: ``class_id``, box ``left, top, right, bottom`` in photo pixels, and ``confidence``."""

    class_id: int
    left: float
    top: float
    right: float
    bottom: float
    confidence: float

    @property
    def area(self) -> float:
        return max(0.0, self.right - self.left) * max(0.0, self.bottom - self.top)

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


def is_face(box: Box) -> bool:
    return box.class_id == FACE_CLASS


# --- From boxes to cells --------------------------------------------------------------------------------

#: The least evidence a cell row is stored with (`indexer.regions`; a box class's cells too), where
#: ``image_labels`` holds a box class's best cell whatever it is: from this score up the two agree.
SCORE_FLOOR = 0.005

#: Boxes are stored (and scored) from this raw detector score up (a calibrated confidence of about 0.05). The
#: object detector returns boxes down to 0.05, up to 100 a photo; on realscenes-dev this keeps 18 a photo
#: against 64 from 0.1, with the same retrieval figures to the third decimal (a weaker box could only matter
#: where the classifier alone nearly answers: `calibration.fuse`), and a lighter writer thread.
STORED_FROM = 0.2

#: A box occupies a cell it covers this share of, or whose cell holds this share of the box (and always the
#: cell holding most of it, so every box counts somewhere): the retrieval protocol's own rule for a true
#: box (``shared/realscenes-dev``), applied to the detector's box. On realscenes-dev it gave cell F1 0.71
#: against 0.32 for issue 12's face rule (confidence times the share of the box in the cell, combined as
#: independent chances), which spreads a large box thin over its cells (bench/RESULTS.md).
OCCUPIES_CELL = 0.25
HOLDS_BOX = 0.5


def box_shares(box: Box, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell (``cells``: `geometry.cell_bounds`): the share of ``box`` inside it, and the overlap's area."""
    import numpy as np

    overlap = (np.clip(np.minimum(box.right, cells[:, 2]) - np.maximum(box.left, cells[:, 0]), 0, None)
               * np.clip(np.minimum(box.bottom, cells[:, 3]) - np.maximum(box.top, cells[:, 1]), 0, None))
    return overlap / max(box.area, np.finfo(float).tiny), overlap


def occupied(box: Box, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which cells ``box`` occupies (`OCCUPIES_CELL`, `HOLDS_BOX`, and its main cell), and the overlaps."""
    share, overlap = box_shares(box, cells)
    cell_area = (cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])
    return (overlap >= OCCUPIES_CELL * cell_area) | (share >= HOLDS_BOX) | (share == share.max()), overlap


def cell_scores(boxes: Iterable[Box], width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the confidence that the class occupies it, and the share of the cell its boxes cover.

    ``boxes`` are one class's. A box counts with its calibrated confidence (`calibration.box_confidence`) in
    the cells it occupies (`occupied`), and a cell takes its class's most confident box there: boxes of one
    class are no independent evidence (suppression leaves overlapping near-duplicates), so they are not
    added up. The scores are probabilities already: box classes are read as stored (`calibration.AS_STORED`).
    """
    import numpy as np

    cells = cell_bounds(width, height)
    best = np.zeros(CELLS)
    covered = np.zeros(CELLS)
    for box in boxes:
        where, overlap = occupied(box, cells)
        best = np.maximum(best, np.where(where, calibration.box_confidence(box.class_id, box.confidence), 0.0))
        covered += overlap
    cell_area = (cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])
    return best, np.minimum(1.0, covered / cell_area)


def photo_share(boxes: Iterable[Box], width: float, height: float) -> float:
    """The share of the photo the boxes cover (overlaps counted twice, capped at 1): a class's image ``share``."""
    return min(1.0, sum(box.area for box in boxes) / (width * height))


def by_class(boxes: Iterable[Box]) -> dict[int, list[Box]]:
    """The boxes of each class, in class order."""
    grouped: dict[int, list[Box]] = {}
    for box in sorted(boxes, key=lambda b: b.class_id):
        grouped.setdefault(box.class_id, []).append(box)
    return grouped


def best_first(boxes: Iterable[Box]) -> tuple[Box, ...]:
    """The boxes the index stores (`STORED_FROM`), as it numbers them: best confidence first, ties by class
    and place, so both engines (and every run) store the same boxes under the same numbers."""
    kept = (Box(int(b[0]), *(float(v) for v in b[1:])) for b in boxes if b[-1] >= STORED_FROM)
    return tuple(sorted(kept, key=lambda b: (-b.confidence, b.class_id, b.left, b.top, b.right, b.bottom)))


# --- Drawing -------------------------------------------------------------------------------------------

#: Boxes are drawn and listed from this confidence up: the query's default ``--min-score``, so what is drawn
#: is what a query finds. The detectors keep weaker boxes for the cell scores, which drawn would hide the photo.
SHOWN_FROM = calibration.DEFAULT_MIN_SCORE


def worth_showing(box: Box, min_confidence: float = SHOWN_FROM) -> bool:
    return confidence(box) >= min_confidence


def confidence(box: Box) -> float:
    """What a person reads for a box: the detector's confidence as the calibration reads it."""
    return calibration.box_confidence(box.class_id, box.confidence)


def label(box: Box) -> str:
    """The text drawn beside a box, the same everywhere (`show`, `segment`, `--html`, `serve`): "person 87%"."""
    return f"{class_name(box.class_id)} {calibration.percent(confidence(box))}"


def as_json(box: Box) -> dict:
    """A box as JSON output gives it (`show --json`, `query --json`): class id and name, corners in photo
    pixels, and the confidence a person reads (`confidence`)."""
    return {"class": box.class_id, "name": class_name(box.class_id), "box": [box.left, box.top, box.right, box.bottom],
            "confidence": round(confidence(box), calibration.JSON_DECIMALS)}


def overlay(box: Box, width: float, height: float) -> dict:
    """A box as a page places it over a photo of ``width`` x ``height``: ``left``, ``top``, ``width``,
    ``height`` as fractions of the photo, its ``label``, and ``face`` (faces and objects are styled apart)."""
    return {"left": box.left / width, "top": box.top / height, "width": box.width / width,
            "height": box.height / height, "label": label(box), "face": is_face(box)}


def text_label(line) -> str:
    """The text drawn beside a line of text read in a photo (`indexer.words.Line`): ``"DANGER" 97%``."""
    return f'"{line.text}" {calibration.percent(line.confidence)}'


def text_overlay(line, width: float, height: float) -> dict:
    """A line of text (`indexer.words.Line`) as a page places it, as `overlay` places a box, with ``text`` true
    (a box's overlay has no ``text``)."""
    return {"left": line.left / width, "top": line.top / height, "width": (line.right - line.left) / width,
            "height": (line.bottom - line.top) / height, "label": text_label(line), "face": False, "text": True}


def reaches(box: Box, width: float, height: float, cells: Iterable[int]) -> bool:
    """The box reaches into one of ``cells`` (0..8, row-major) of a ``width`` x ``height`` photo (pure Python,
    for the query path: the cells are `geometry.cell_bounds`'s thirds)."""
    for cell in cells:
        row, col = divmod(cell, GRID)
        x0, x1 = width * col / GRID, width * (col + 1) / GRID
        y0, y1 = height * row / GRID, height * (row + 1) / GRID
        if x0 < box.right and box.left < x1 and y0 < box.bottom and box.top < y1:
            return True
    return False


def of_terms(boxes: Sequence[Box], terms: Iterable[tuple[Iterable[int], Iterable[int], float]], width: float,
             height: float) -> list[Box]:
    """The boxes a query's terms are about (``terms``: (classes, cells, threshold) triples): of one of a
    term's classes, reaching one of its cells, and as confident as its threshold; best first. What `--html`
    outlines."""
    terms = [(set(classes), tuple(cells), threshold) for classes, cells, threshold in terms]
    return [box for box in boxes
            if any(box.class_id in classes and reaches(box, width, height, cells) and worth_showing(box, threshold)
                   for classes, cells, threshold in terms)]
