"""Text in photos: PaddleOCR's PP-OCRv6 small detector and recogniser (ONNX, shipped in ``indexer/data/ocr``,
NOTICE.txt there), run by OpenVINO, with the detector's post-processing and the recogniser's decoding written
here in numpy, so imgidx needs neither ``rapidocr`` nor its OpenCV, Shapely, pyclipper and omegaconf.

The detector (DB, "differentiable binarization") gives each pixel of a photo shrunk to `DETECTION_SIDE` a
probability of lying in a text line's shrunk core. Its post-processing (`lines_of`): threshold the map
(`BINARY_THRESHOLD`), join the pixels into connected components, fit each a rectangle along its main axis,
keep those whose mean probability reaches `BOX_THRESHOLD`, and grow them back by the unclip ratio (DB's rule:
by area x ratio / perimeter on every side). Each rectangle is cut out of the photo, straightened to a strip
`RECOGNITION_HEIGHT` high, and read by the recogniser, whose per-column class probabilities are decoded by CTC
greedy decoding (best class per column, repeats merged, blanks dropped) with the character list stored in the
model file itself. A photo where the detector finds nothing costs the detector alone.

The detector looks twice: first at a small copy (`GATE_SIDE`), where a photo with no line ends the read (on
real photos it also marks large solid blobs there, which are not lines: `GATE_MAX_THICKNESS`), then at
`DETECTION_SIDE`.

The detector runs in int8 (`DETECTOR_PRECISION`): NNCF's post-training quantization of the ONNX file, shipped
built in ``indexer/data/openvino_text`` (`bench/shipped_models.py` builds it once, calibrated on signs made by
`bench/text.py`'s generator and realscenes photos at both of the detector's sides). It halves the detector's
CPU time and read the same words as fp32 in `bench/text.py`, so a photo without text costs 1.23-1.27x the CPU
of indexing without text instead of 1.55x (bench/RESULTS.md). It is shipped, not built at the first run as the
backbones' int8 models are: its calibration photos are not in the package, and building it needs NNCF and a
minute. The recogniser stays fp32: it runs only where there is text.

Boxes are in pixels of the photo as a person sees it (after EXIF orientation): the axis-aligned bounds of the
straightened rectangle. OpenVINO prints nothing; rapidocr's INFO lines never existed here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer import images
from indexer.errors import ImgidxError
from indexer.runtime.recipes import Recipe
from indexer.words import Line, folded

MODEL_FOLDER = ("data", "ocr")
DETECTOR_FILE = "PP-OCRv6_det_small.onnx"
#: The detector's int8 model (module docstring): its name in the shipped ``built.json``, and NNCF's settings
#: (its defaults, the "performance" preset: as fast as "mixed" or faster, and read the same words).
DETECTOR_NAME = "pp-ocrv6-det-small"
INT8_RECIPE = Recipe()
INT8, FP32 = "int8", "fp32"
#: The detector's precision (`FP32`: the ONNX file as shipped by rapidocr; the bench compares both).
DETECTOR_PRECISION = INT8
RECOGNISER_FILE = "PP-OCRv6_rec_small.onnx"

#: The detector sees the photo with this shorter side (a multiple of its stride, 32). rapidocr uses 736;
#: the detector's cost grows with the pixels (bench/text.py: 24 ms of CPU at 320x416, 55 at 480x640, 134 at
#: 736x992), and a photo without text pays only this. Chosen on bench/text.py (bench/RESULTS.md).
DETECTION_SIDE = 480
STRIDE = 32
#: Before that, the detector looks at the photo with this shorter side, and a photo where it finds no line at
#: all is done: most photos hold no text, and this pass costs about half the full one (None: no such pass).
GATE_SIDE: int | None = 320
#: The gate ignores a "line" thicker than this share of its map's shorter side. On real photos the detector at
#: the gate's side often marks one large solid blob with high probability over much of the photo: 17 of 68 real
#: photos without text went on to the full look for one, their shorter side 0.44-1.09 of the map's (after the
#: unclip). Text lines are thinner (at most 0.27 on the bench's signs, 0.31 on its real photos) but for two
#: blobs over text that the full look read (0.60, 0.75). Above those, this stops 10 of the 17 and read every
#: word the same (bench/RESULTS.md "Real photos without text"; 0.3 stopped all 17 and lost those words).
GATE_MAX_THICKNESS: float | None = 0.8
#: The largest side the detector sees (a panorama is shrunk further).
DETECTION_MAX_SIDE = 1280
#: PaddleOCR's and rapidocr's defaults for these models: a map pixel is text from `BINARY_THRESHOLD`, a line
#: is kept when its mean probability reaches `BOX_THRESHOLD`, and grown by `UNCLIP_RATIO`.
BINARY_THRESHOLD = 0.3
BOX_THRESHOLD = 0.5
UNCLIP_RATIO = 1.6
#: Lines thinner than this (map pixels) are noise; after growing, `MIN_SIDE` + 2.
MIN_SIDE = 3
#: The most lines read in one photo (rapidocr's ``max_candidates`` is 1000; a photo of a page is read whole,
#: a photo of grass with a thousand specks is not).
MAX_LINES = 200
#: The recogniser's input height, and PaddleOCR's widest strip in the batch before padding.
RECOGNITION_HEIGHT = 48
#: Strips wider than this many times their height are cut off (a run of text that long is several lines).
MAX_ASPECT = 40
#: Lines read per recogniser call (rapidocr's ``rec_batch_num``).
RECOGNITION_BATCH = 6
#: A crop this many times taller than wide is read turned a quarter (vertical text; rapidocr's rule).
VERTICAL_ASPECT = 1.5
#: Lines read with a lower mean character confidence are dropped (rapidocr's ``text_score``).
MIN_CONFIDENCE = 0.5
#: Near-horizontal components (their main axis within this many degrees) get an axis-aligned box.
SNAP_DEGREES = 3.0
#: The CTC blank is class 0; the model's last class is a space (PaddleOCR's ``use_space_char``).
BLANK, SPACE = "", " "
#: Inference as the face detector runs it: one thread per call, on the detector threads of the pipeline.
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                   "ENABLE_CPU_PINNING": False}


class TextReaderError(ImgidxError):
    """The text models are missing, or OpenVINO, which runs them, is not installed."""


@dataclass(frozen=True)
class Quad:
    """A text line's rectangle in some image's pixels: its four corners, clockwise from the top-left of the
    text as read, and its sides (``width`` along the text, ``height`` across it)."""

    corners: np.ndarray  # (4, 2): x, y
    width: float
    height: float

    def scaled(self, sx: float, sy: float) -> "Quad":
        corners = self.corners * np.array([sx, sy], np.float32)
        return Quad(corners, float(np.linalg.norm(corners[1] - corners[0])), float(np.linalg.norm(corners[3] - corners[0])))

    def bounds(self, width: float, height: float) -> tuple[float, float, float, float]:
        x0, y0 = self.corners.min(axis=0)
        x1, y1 = self.corners.max(axis=0)
        return (float(max(0.0, x0)), float(max(0.0, y0)), float(min(width, x1)), float(min(height, y1)))


# --- The detector's post-processing (pure numpy and scipy) ------------------------------------------------


def detector_shape(height: int, width: int, side: int = DETECTION_SIDE) -> tuple[int, int]:
    """The detector's input shape for a photo: shorter side ``side``, the longer one at most
    `DETECTION_MAX_SIDE`, both rounded to the stride."""
    scale = min(side / min(height, width), DETECTION_MAX_SIDE / max(height, width))
    return (max(STRIDE, round(height * scale / STRIDE) * STRIDE), max(STRIDE, round(width * scale / STRIDE) * STRIDE))


def normalised_input(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> the models' ``(1, 3, H, W)`` float input in [-1, 1]."""
    return (pixels.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32)


def detector_input(pixels: np.ndarray, side: int) -> np.ndarray:
    """What the detector is given for an RGB photo: resized to `detector_shape` at ``side``, normalised."""
    return normalised_input(images.resize(pixels, detector_shape(*pixels.shape[:2], side)))


def component_quad(ys: np.ndarray, xs: np.ndarray) -> Quad:
    """The rectangle along a component's main axis that holds all its pixels (each pixel a unit square).
    PCA of the pixel coordinates gives the axis; a text line is long and thin, so it is the line's direction."""
    points = np.stack([xs, ys], axis=1).astype(np.float64) + 0.5
    centre = points.mean(axis=0)
    if len(points) > 2:
        cov = np.cov((points - centre).T)
        values, vectors = np.linalg.eigh(cov)
        axis = vectors[:, int(np.argmax(values))]
    else:
        axis = np.array([1.0, 0.0])
    if axis[0] < 0:
        axis = -axis
    if abs(np.degrees(np.arctan2(axis[1], axis[0]))) <= SNAP_DEGREES:
        axis = np.array([1.0, 0.0])
    normal = np.array([-axis[1], axis[0]])
    along = (points - centre) @ axis
    across = (points - centre) @ normal
    a0, a1 = along.min() - 0.5, along.max() + 0.5
    n0, n1 = across.min() - 0.5, across.max() + 0.5
    corners = np.array([centre + a0 * axis + n0 * normal, centre + a1 * axis + n0 * normal,
                        centre + a1 * axis + n1 * normal, centre + a0 * axis + n1 * normal], np.float32)
    return Quad(corners, float(a1 - a0), float(n1 - n0))


def unclipped(quad: Quad, ratio: float = UNCLIP_RATIO) -> Quad:
    """DB's unclip for a rectangle: every side moved out by area x ratio / perimeter."""
    distance = quad.width * quad.height * ratio / (2 * (quad.width + quad.height))
    c = quad.corners
    along = (c[1] - c[0]) / max(quad.width, 1e-6)
    across = (c[3] - c[0]) / max(quad.height, 1e-6)
    grow_a, grow_n = along * distance, across * distance
    corners = np.array([c[0] - grow_a - grow_n, c[1] + grow_a - grow_n, c[2] + grow_a + grow_n, c[3] - grow_a + grow_n],
                       np.float32)
    return Quad(corners, quad.width + 2 * distance, quad.height + 2 * distance)


def dilated(mask: np.ndarray) -> np.ndarray:
    """PaddleOCR's ``use_dilation``: OpenCV's dilation by a 2x2 kernel (anchored at its centre), which grows
    every region one pixel right and down."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:, 1:] |= mask[:, :-1]
    grown[1:, 1:] |= mask[:-1, :-1]
    return grown


def lines_of(probability: np.ndarray, threshold: float = BINARY_THRESHOLD, box_threshold: float = BOX_THRESHOLD,
             ratio: float = UNCLIP_RATIO, max_lines: int = MAX_LINES) -> list[tuple[Quad, float]]:
    """The text lines of a detector map ``(h, w)``: rectangles in map pixels, each with its mean probability,
    strongest first (module docstring)."""
    from scipy import ndimage

    mask = probability > threshold
    if not mask.any():
        return []
    mask = dilated(mask)
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    means = ndimage.mean(probability, labelled, index=np.arange(1, count + 1))
    found = []
    for number, bounds in enumerate(ndimage.find_objects(labelled), start=1):
        if bounds is None or means[number - 1] < box_threshold:
            continue
        ys, xs = np.nonzero(labelled[bounds] == number)
        quad = component_quad(ys + bounds[0].start, xs + bounds[1].start)
        if min(quad.width, quad.height) < MIN_SIDE:
            continue
        grown = unclipped(quad, ratio)
        if min(grown.width, grown.height) < MIN_SIDE + 2:
            continue
        found.append((grown, float(means[number - 1])))
    found.sort(key=lambda item: -item[1])
    return found[:max_lines]


def thin_lines(found: Sequence[tuple[Quad, float]], map_shape: tuple[int, int]) -> list[tuple[Quad, float]]:
    """The gate's lines (`lines_of` in a map of ``map_shape``) that may be text: not thicker than
    `GATE_MAX_THICKNESS` of the map's shorter side (None: any)."""
    if GATE_MAX_THICKNESS is None:
        return list(found)
    thickest = GATE_MAX_THICKNESS * min(map_shape)
    return [(quad, score) for quad, score in found if min(quad.width, quad.height) <= thickest]


# --- The recogniser's input and decoding ----------------------------------------------------------------


def strip(pixels: np.ndarray, quad: Quad, height: int = RECOGNITION_HEIGHT) -> np.ndarray:
    """The line of ``quad`` (in ``pixels``' coordinates) cut out and straightened to ``height`` rows, as
    wide as its aspect asks (at most `MAX_ASPECT` heights); a tall, thin line is turned a quarter."""
    from PIL import Image

    corners = quad.corners
    long_side, short_side = quad.width, quad.height
    if quad.height >= VERTICAL_ASPECT * quad.width:  # vertical text: read top to bottom
        corners = np.roll(corners, -1, axis=0)
        long_side, short_side = quad.height, quad.width
    width = int(min(MAX_ASPECT * height, max(height // 4, round(height * long_side / max(short_side, 1e-6)))))
    top_left, top_right, bottom_right, bottom_left = corners
    data = tuple(float(v) for point in (top_left, bottom_left, bottom_right, top_right) for v in point)
    image = Image.fromarray(pixels).transform((width, height), Image.Transform.QUAD, data,
                                              Image.Resampling.BILINEAR)
    return np.asarray(image)


def batch_input(strips: Sequence[np.ndarray], height: int = RECOGNITION_HEIGHT) -> np.ndarray:
    """Strips padded on the right (with 0 after normalising, as PaddleOCR pads) to the widest one."""
    width = max(s.shape[1] for s in strips)
    batch = np.zeros((len(strips), 3, height, width), np.float32)
    for i, s in enumerate(strips):
        batch[i, :, :, : s.shape[1]] = normalised_input(s)[0]
    return batch


def ctc_greedy(probabilities: np.ndarray, characters: Sequence[str]) -> tuple[str, float]:
    """One strip's ``(columns, classes)`` probabilities -> its text and mean character confidence: the best
    class per column, repeats merged, blanks (class 0) dropped."""
    best = probabilities.argmax(axis=1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    if not keep.any():
        return "", 0.0
    text = "".join(characters[i] for i in best[keep])
    return text, float(probabilities.max(axis=1)[keep].mean())


# --- Running the models ---------------------------------------------------------------------------------


def model_path(name: str) -> Path:
    path = Path(str(resources.files("indexer").joinpath(*MODEL_FOLDER, name)))
    if not path.is_file():
        raise TextReaderError(f"the text model {path} is missing: reinstall imgidx")
    return path


def detector_digest() -> str:
    """The sha256 of the shipped ONNX detector, which its int8 model's ``built.json`` names."""
    from indexer.runtime import cache

    return cache.file_sha256(model_path(DETECTOR_FILE))


def int8_record() -> dict:
    """What the shipped int8 detector's ``built.json`` holds when it was built from this imgidx's ONNX file
    with this recipe."""
    from indexer.runtime.openvino_model import QUANTIZATION_KEY

    return {"model": DETECTOR_NAME, "digest": detector_digest(), QUANTIZATION_KEY: INT8_RECIPE.tag}


def detector_model(core, precision: str):
    """The detector as OpenVINO reads it: the ONNX file (`FP32`), or its shipped int8 model, checked."""
    if precision == FP32:
        return core.read_model(str(model_path(DETECTOR_FILE)))
    from indexer.runtime import openvino_model

    model = openvino_model.read_shipped(int8_record())
    if model is None:
        raise TextReaderError("the text detector's int8 model (indexer/data/openvino_text) is missing or was not "
                              "built from this imgidx's detector: reinstall imgidx")
    return model


class TextReader:
    """The detector and the recogniser in OpenVINO; `read` is safe to call from several threads (one photo at
    a time per reader: the pipeline builds one per detector thread, `Readers`)."""

    def __init__(self, side: int | None = None, precision: str | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise TextReaderError("reading text needs OpenVINO, which is not installed here: pip install openvino") from None
        core = ov.Core()
        try:
            recogniser = core.read_model(str(model_path(RECOGNISER_FILE)))
            listed = recogniser.get_rt_info(["framework", "character"]).astype(str)
            detector = detector_model(core, precision or DETECTOR_PRECISION)
            self.detector = core.compile_model(detector, "CPU", OPENVINO_CONFIG).create_infer_request()
            self.recogniser = core.compile_model(recogniser, "CPU", OPENVINO_CONFIG).create_infer_request()
        except RuntimeError as exc:
            raise TextReaderError(f"cannot load the text models in OpenVINO: {str(exc).splitlines()[0]}") from None
        self.characters = [BLANK, *listed.split("\n"), SPACE]
        self.side = side or DETECTION_SIDE
        self.lock = threading.Lock()

    def probability_map(self, pixels: np.ndarray, side: int | None = None) -> np.ndarray:
        """The detector's map for ``pixels`` at shorter side ``side`` (default the reader's)."""
        self.detector.infer({0: detector_input(pixels, side or self.side)})
        return self.detector.get_output_tensor(0).data[0, 0].copy()

    def recognise(self, strips: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """The text of each strip, batched by width (`RECOGNITION_BATCH`)."""
        order = sorted(range(len(strips)), key=lambda i: strips[i].shape[1])
        read: list[tuple[str, float]] = [("", 0.0)] * len(strips)
        for start in range(0, len(order), RECOGNITION_BATCH):
            chunk = order[start : start + RECOGNITION_BATCH]
            self.recogniser.infer({0: batch_input([strips[i] for i in chunk])})
            output = self.recogniser.get_output_tensor(0).data
            for row, i in enumerate(chunk):
                read[i] = ctc_greedy(output[row], self.characters)
        return read

    def read(self, pixels: np.ndarray, photo_size: tuple[int, int] | None = None) -> list[Line]:
        """The lines of text in an oriented RGB photo, most confident detection first; boxes in pixels of a
        photo of ``photo_size = (width, height)`` (default: ``pixels``' own size)."""
        height, width = pixels.shape[:2]
        out_w, out_h = photo_size or (width, height)
        with self.lock:
            if GATE_SIDE is not None and GATE_SIDE < self.side:
                gate_map = self.probability_map(pixels, GATE_SIDE)
                if not thin_lines(lines_of(gate_map), gate_map.shape):
                    return []
            probability = self.probability_map(pixels)
            quads = lines_of(probability)
            if not quads:
                return []
            map_h, map_w = probability.shape
            in_pixels = [quad.scaled(width / map_w, height / map_h) for quad, _ in quads]
            texts = self.recognise([strip(pixels, quad) for quad in in_pixels])
        lines = []
        for quad, (text, confidence) in zip(in_pixels, texts):
            text = text.strip()
            if confidence < MIN_CONFIDENCE or not folded(text):
                continue
            left, top, right, bottom = quad.scaled(out_w / width, out_h / height).bounds(out_w, out_h)
            if right > left and bottom > top:
                lines.append(Line(left, top, right, bottom, text, confidence))
        return lines


#: The readers built in this process, by detector side and precision, kept for the next run (building one takes
#: about a second).
_built: dict[tuple[int, str], list[TextReader]] = {}
_built_lock = threading.Lock()


class Readers:
    """A loader handing out a different reader of this process at each call, as `indexer.faces.Detectors`
    does for faces: one per thread that reads photos side by side. Picklable (Ray actors call it)."""

    def __init__(self) -> None:
        self.handed = 0

    def __call__(self) -> TextReader:
        with _built_lock:
            built = _built.setdefault((DETECTION_SIDE, DETECTOR_PRECISION), [])
            if len(built) <= self.handed:
                built.append(TextReader(DETECTION_SIDE, DETECTOR_PRECISION))
            self.handed += 1
            return built[self.handed - 1]
