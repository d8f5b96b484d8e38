"""The box pass: every detector an index runs over a photo, as one step that both engines, `imgidx segment`
and `imgidx redact` share, so that they find the same boxes.

With objects on, the object detector (`indexer.objects`) runs first, on a batch of photos; then the face
detector searches each photo whole and, at its finer scales, only the tiles over the person boxes the object
detector found (`faces.FaceDetector.detect` with ``people``): faces are on people, and a photo without
people costs one window instead of the whole tiling (bench/faces.py). With objects off, faces are searched
over the whole tiling (`faces.LEVELS`), as before objects.

Both detectors get the photo as decoded for the backbone and shrunk by `faces.detection_pixels`; boxes come
back in pixels of the photo as seen (``sizes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

from indexer.boxes import Box
from indexer.labels import COCO_CLASSES, object_class

if TYPE_CHECKING:
    import numpy as np

    from indexer.faces import FaceDetector

#: The object class whose boxes guide the face search.
PERSON_CLASS = object_class(COCO_CLASSES.index("person"))
#: Person boxes from this confidence up guide the face search. On realscenes-dev (bench/faces.py --guided,
#: bench/RESULTS.md) 0.2 found a face for as many people as the whole tiling; 0.3 lost one.
GUIDE_MIN_CONFIDENCE = 0.2
#: A face that is no guiding person's (its centre in no person box, or it is smaller than
#: `faces.FACE_IN_PERSON` of the box's height) is kept only from this confidence up: faces are on people, and
#: those elsewhere were mostly false (a star field's, a poster's). From 0.75, 90% of the faces kept
#: elsewhere lay on a person (issue 12's figures), and none of the people with a face was lost.
ALONE_MIN_CONFIDENCE = 0.75


class ObjectDetector(Protocol):
    """What the box pass needs of an object detector (`indexer.objects.ObjectDetector`)."""

    def detect(self, photos: Sequence["np.ndarray"], sizes: Sequence[tuple[int, int]]) -> list[list[Box]]: ...


@dataclass
class Found:
    """The boxes of each photo (best first), and the seconds each detector took for all of them."""

    boxes: list[list[Box]] = field(default_factory=list)
    face_seconds: float = 0.0
    object_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.face_seconds + self.object_seconds


def people(boxes: Sequence[Box]) -> list[tuple[float, float, float, float]]:
    """The person boxes among ``boxes`` that guide the face search (`GUIDE_MIN_CONFIDENCE`), as it takes
    them: ``(x0, y0, x1, y1)``."""
    return [(b.left, b.top, b.right, b.bottom) for b in boxes
            if b.class_id == PERSON_CLASS and b.confidence >= GUIDE_MIN_CONFIDENCE]


def find(photos: Sequence["np.ndarray"], sizes: Sequence[tuple[int, int]], faces: "FaceDetector | None",
         objects: ObjectDetector | None) -> Found:
    """The boxes of each photo (``photos`` as `faces.detection_pixels` gives them, ``sizes`` the photos'
    ``(width, height)`` as seen): objects, then faces guided by their person boxes (module docstring).
    None for a detector leaves its boxes out; without ``objects`` faces search the whole tiling."""
    found = Found([[] for _ in photos])
    if objects is not None and photos:
        start = time.perf_counter()
        for boxes, detected in zip(found.boxes, objects.detect(list(photos), list(sizes))):
            boxes.extend(detected)
        found.object_seconds = time.perf_counter() - start
    if faces is not None:
        start = time.perf_counter()
        for pixels, size, boxes in zip(photos, sizes, found.boxes):
            guide = people(boxes) if objects is not None else None
            boxes.extend(guided_faces(faces, pixels, size, guide))
        found.face_seconds = time.perf_counter() - start
    return found


def guided_faces(detector: "FaceDetector", pixels: "np.ndarray", size: tuple[int, int],
                 guide: list[tuple[float, float, float, float]] | None, levels=None) -> list[Box]:
    """The faces of one photo (boxes of `FACE_CLASS`), searched over the whole tiling (``guide`` None) or over the
    whole photo and the tiles over the ``guide`` person boxes (`people`); guided, a face that is no person's
    must reach `ALONE_MIN_CONFIDENCE`."""
    from indexer import faces as face_detection

    tiling = {} if levels is None else {"levels": levels}  # the detector's own `faces.LEVELS` unless given
    found = detector.detect(pixels, size, people=guide, **tiling)
    if guide is None:
        return found

    def on_someone(face) -> bool:
        """The face's centre lies in a person box, and it is not too small to be that person's."""
        x, y, height = (face.left + face.right) / 2, (face.top + face.bottom) / 2, face.bottom - face.top
        return any(x0 <= x <= x1 and y0 <= y <= y1 and height >= face_detection.FACE_IN_PERSON * (y1 - y0)
                   for x0, y0, x1, y1 in guide)

    return [face for face in found if face.confidence >= ALONE_MIN_CONFIDENCE or on_someone(face)]
