"""Retrieval quality on real everyday scenes: what a person searching their photos gets back.

Measured on ``../shared/realscenes-dev/`` (126 COCO photos, 929 boxes) with the protocol of its README:

- **image** level: query ``W`` for COCO class K; a returned photo that *shows* K (a box of K covers >= 2% of
  it) is a true positive, one that *lacks* K (no box at all) a false positive, a photo that shows K and is
  not returned a false negative; other photos are ignored for K.
- **cell** level: the cells the query reports for W (its term's cells) against the cells K *occupies*
  (a box covers >= 25% of the cell, or a box of >= 1.5% of the photo lies >= 50% inside it) and those it
  *is absent* from (no box covers >= 2% of the cell).
- **pair** level, the mission's query shape: for every photo and every two classes that each occupy some
  cell, one query ``A in CELL1 AND B in CELL2`` with each class's main cell (the occupied cell its boxes
  cover most). Each distinct query runs over all photos: a returned photo where both occupy those cells
  is a true positive, one where either is absent a false positive; expected photos not returned are
  false negatives.

Precision, recall and F1 are summed over classes (micro). COCO classes ImageNet-1k cannot express are
listed, not scored. The COCO -> ImageNet mapping is the one table `MAPPING` below.

Parts (each printed with the command line that reproduces it):

1. **shipped**: the dev photos indexed by `indexer.pipeline` at the default settings, queried through the
   query engine at the default ``--min-score``: with the hand-made mapping, and with the COCO names as a
   user types them (refusals counted). Plus a per-class table.
2. **composites**: 3x3 canvases of object crops cut from the dev photos (never the test photos), each crop
   pasted into a known cell; indexed and queried the same way. Reported for all crops, and for the crops
   the network names on its own (its top-1 class is in the crop's mapping), which isolates *where* from
   *what*.
3. **study** (``--study``): the variants compared in one run from the same class maps: scale, pooling over
   a cell, evidence that does not compete, calibration, flip averaging. Each is scored uncalibrated (best
   threshold) and calibrated with 5-fold cross-validation by photo (priors and curve fitted on four
   fifths, scored on the fifth), with its model + scoring cost per image against today's.
4. **fit** (``--fit``): priors and curve of the shipped evidence fitted on all dev photos, written to
   ``indexer/data/calibration-MODEL.json`` (bump `CALIBRATION_VERSION` when the evidence changes). For
   VGG-16 run it with the real weights: ``--model vgg16 --weights vgg_16.ckpt --fit``.

    .venv/bin/python bench/retrieval_quality.py [--study] [--fit] [--model efficientnet-lite0] [--weights PATH]
                                                [--runtime auto|tf|openvino] [--precision auto|int8|bf16|fp32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer import boxes, calibration, geometry, images, inference, labels, pipeline, regions, store  # noqa: E402
from indexer.calibration import MIN_RISE, Calibration  # noqa: E402
from indexer.geometry import CELL_NAMES, total_stride  # noqa: E402
from indexer import runtime as runtimes  # noqa: E402
import int8_accuracy  # noqa: E402  (bench/, the script's folder)
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402
from query import DEFAULT_MIN_SCORE  # noqa: E402
from query.compile import compile_query  # noqa: E402
from query.parser import QueryError, Term, parse  # noqa: E402
from query.resolve import Resolution, Sense, UnknownLabelError, resolve  # noqa: E402
from query.search import Prepared, execute, search  # noqa: E402

DEV = ROOT.parent / "shared" / "realscenes-dev"
#: Bump when the evidence (`indexer.regions`) or the fitting below changes: indexes record it.
CALIBRATION_VERSION = "2026-12-01.3"
#: Bump when the object detector's boxes, or how they become cells (`indexer.boxes`), change.
BOX_CALIBRATION_VERSION = "2026-12-05.1"

#: COCO class -> the ImageNet-1k classes that show it (hand-made; an object's unmistakable parts count:
#: a car's wheel and grille). Read against indexer/data/imagenet_classes.tsv.
MAPPING: dict[str, tuple[int, ...]] = {
    "bicycle": (444, 671),  # tandem, mountain bike
    "car": (407, 436, 468, 511, 609, 627, 656, 661, 751, 817, 479, 581),  # car kinds, car wheel, grille
    "motorcycle": (665, 670),  # moped, motor scooter
    "airplane": (404, 895, 908),  # airliner, warplane, wing
    "bus": (779, 874, 654),  # school bus, trolleybus, minibus
    "train": (466, 547, 565, 705, 820, 829),  # bullet train, electric/steam locomotive, freight/passenger car, streetcar
    "truck": (555, 569, 675, 717, 734, 864, 867),  # fire engine, garbage truck, moving van, pickup, police van, tow, trailer
    "boat": (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    "traffic light": (920,),
    "stop sign": (919,),  # street sign
    "parking meter": (704,),
    "bench": (703,),  # park bench
    "bird": tuple(range(7, 25)) + tuple(range(80, 101)) + tuple(range(127, 147)),
    "cat": (281, 282, 283, 284, 285),  # domestic cats
    "dog": tuple(range(151, 269)),
    "horse": (339, 603),  # sorrel, horse cart
    "sheep": (348, 349),  # ram, bighorn
    "cow": (345, 346, 347),  # ox, water buffalo, bison
    "elephant": (101, 385, 386),
    "bear": (294, 295, 296, 297),
    "zebra": (340,),
    "backpack": (414,),
    "umbrella": (879,),
    "handbag": (748,),  # purse
    "tie": (457, 906),  # bow tie, Windsor tie
    "skis": (795,),
    "sports ball": (429, 430, 522, 574, 722, 768, 805, 852, 890),
    "tennis racket": (752,),
    "bottle": (440, 720, 737, 898, 907),
    "wine glass": (572, 966),  # goblet, red wine
    "cup": (504, 968),  # coffee mug, cup
    "spoon": (910,),  # wooden spoon
    "bowl": (659, 809),  # mixing bowl, soup bowl
    "banana": (954,),
    "apple": (948,),  # Granny Smith
    "orange": (950,),
    "broccoli": (937,),
    "hot dog": (934,),
    "pizza": (963,),
    "chair": (423, 559, 765, 857),  # barber, folding, rocking chair, throne
    "couch": (831,),  # studio couch
    "potted plant": (738,),  # pot, flowerpot
    "bed": (564, 750, 520, 516),  # four-poster, quilt, crib, cradle
    "dining table": (532,),
    "toilet": (861,),  # toilet seat
    "tv": (851, 664, 782, 598, 548),  # television, monitor, screen, home theater, entertainment center
    "laptop": (620, 681),  # laptop, notebook
    "mouse": (673,),
    "remote": (761,),
    "keyboard": (508, 878, 810),  # computer keyboard, typewriter keyboard, space bar
    "cell phone": (487,),
    "microwave": (651,),
    "oven": (827, 766),  # stove, rotisserie
    "toaster": (859,),
    "sink": (896,),  # washbasin
    "refrigerator": (760,),
    "clock": (409, 530, 892),  # analog, digital, wall clock
    "vase": (883,),
    "teddy bear": (850,),
    "hair drier": (589,),
}
#: The headline set (issue 20): every COCO class, typed as a person would (``person``, ``tv``, ``couch``).
TYPED = labels.COCO_CLASSES
#: The ``weighted`` rule's classifier weights the sweep tries.
FUSION_WEIGHTS = (0.3, 0.5, 0.7)
NAMES = tuple(MAPPING)
#: Study: the threshold grid for uncalibrated evidence and for calibrated confidences.
EVIDENCE_GRID = (0.02, 0.03, 0.05, 0.07, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
CONFIDENCE_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
PAIR_PRECISION = 0.6
MIN_SCORE_SWEEP = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
FOLDS = 5
#: Calibration: priors below this quantile of all priors are raised to it (a class the reference photos
#: never show must not make any trace of it look like news), the discount exponent, and the curve's knots.
PRIOR_FLOOR_QUANTILE = 0.25
BETA = 0.5
KNOTS = 14


# --------------------------------------------------------------------------------------------- protocol

@dataclass
class Truth:
    image: dict[str, dict[str, int]]  # photo -> class -> 1 shows / 0 lacks (absent key: ignored)
    cell: dict[str, dict[str, np.ndarray]]  # photo -> class -> (9,) 1 occupies / 0 absent / -1 ignored
    main_cell: dict[str, dict[str, int]]  # photo -> class -> the occupied cell its boxes cover most


def _cell_box(width: float, height: float, cell: int) -> tuple[float, float, float, float]:
    row, col = divmod(cell, 3)
    return width * col / 3, height * row / 3, width * (col + 1) / 3, height * (row + 1) / 3


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def truths(annotations: dict, names=NAMES) -> Truth:
    truth = Truth({}, {}, {})
    for photo, entry in annotations.items():
        width, height = entry["width"], entry["height"]
        area = width * height
        boxes = defaultdict(list)
        for obj in entry["objects"]:
            boxes[obj["class"]].append(obj["box"])
        image, cells, main = {}, {}, {}
        for name in names:
            found = boxes.get(name, [])
            if not found:
                image[name] = 0
            elif any(_area(b) >= 0.02 * area for b in found):
                image[name] = 1
            state = np.zeros(9, int)
            covered = np.zeros(9)
            for cell in range(9):
                box = _cell_box(width, height, cell)
                inside = [_overlap(b, box) for b in found]
                occupies = any(
                    i >= 0.25 * _area(box) or (_area(b) >= 0.015 * area and i >= 0.5 * _area(b))
                    for b, i in zip(found, inside)
                )
                near = any(i >= 0.02 * _area(box) for i in inside)
                state[cell] = 1 if occupies else (-1 if near else 0)
                covered[cell] = sum(inside)
            cells[name] = state
            if (state == 1).any():
                main[name] = int(np.argmax(np.where(state == 1, covered, -1)))
        truth.image[photo], truth.cell[photo], truth.main_cell[photo] = image, cells, main
    return truth


def pair_queries(truth: Truth) -> list[tuple[str, int, str, int]]:
    queries = set()
    for main in truth.main_cell.values():
        for a, b in itertools.combinations(sorted(main), 2):
            queries.add((a, main[a], b, main[b]))
    return sorted(queries)


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: "Counts") -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def text(self) -> str:
        return f"P {self.precision:.2f} R {self.recall:.2f} F1 {self.f1:.3f}"


@dataclass
class Levels:
    image: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    cell: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    pair: Counts = field(default_factory=Counts)

    def total(self, level: str) -> Counts:
        total = Counts()
        for counts in getattr(self, level).values():
            total.add(counts)
        return total


def score(truth: Truth, cells_of, pairs_of, photos, names=NAMES) -> Levels:
    """Compare answers with the truth: ``cells_of(photo, name)`` the cells a query for the class reports in
    the photo (empty: not returned), ``pairs_of(query)`` the photos a pair query returns."""
    levels = Levels()
    for photo in photos:
        for name in names:
            cells = cells_of(photo, name)
            shows = truth.image[photo].get(name)
            counts = levels.image[name]
            if shows == 1:
                counts.tp += bool(cells)
                counts.fn += not cells
            elif shows == 0:
                counts.fp += bool(cells)
            state = truth.cell[photo][name]
            counts = levels.cell[name]
            for cell in range(9):
                got = cell in cells
                counts.tp += got and state[cell] == 1
                counts.fn += (not got) and state[cell] == 1
                counts.fp += got and state[cell] == 0
    for query in pair_queries(truth):
        a, cell_a, b, cell_b = query
        returned = pairs_of(query)
        for photo in photos:
            sa, sb = truth.cell[photo][a][cell_a], truth.cell[photo][b][cell_b]
            got = photo in returned
            if sa == 1 and sb == 1:
                levels.pair.tp += got
                levels.pair.fn += not got
            elif sa == 0 or sb == 0:
                levels.pair.fp += got
    return levels


def line(levels: Levels) -> str:
    return (f"image {levels.total('image').text()} | cell {levels.total('cell').text()} | "
            f"pair {levels.pair.text()} ({levels.pair.tp} of {levels.pair.tp + levels.pair.fn})")


# ------------------------------------------------------------------------------------ model class maps

@dataclass
class Maps:
    """Class maps of every photo at each working size, the indexer's own views at the default size, and
    what computing them cost."""

    logits: dict[str, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    geometry: dict[str, dict[int, object]] = field(default_factory=lambda: defaultdict(dict))
    views: dict[str, list[regions.View]] = field(default_factory=dict)
    seconds: dict[object, float] = field(default_factory=lambda: defaultdict(float))


def class_maps(model, photos: dict[str, np.ndarray], sizes, flip_size: int | None = None) -> Maps:
    maps = Maps()
    stride = total_stride(model.layers)
    poolings = inference.Poolings(model)
    first = next(iter(photos.values()))
    for size in sizes:
        model.class_map(images.resize(first, images.working_shape(*first.shape[:2], size, stride))[None])  # warm
    for name, pixels in photos.items():
        fine = images.resize(pixels, images.working_shape(*pixels.shape[:2], DEFAULT_WORKING_SIZE, stride))
        start = time.perf_counter()
        maps.views[name] = inference.views(model, fine[None], poolings)
        maps.seconds["views"] += time.perf_counter() - start
        for size in sizes:
            shape = images.working_shape(*pixels.shape[:2], size, stride)
            start = time.perf_counter()
            maps.logits[name][size] = model.class_map(images.resize(pixels, shape)[None])[0]
            maps.seconds[size] += time.perf_counter() - start
            maps.geometry[name][size] = model.geometry(shape)
        if flip_size:
            start = time.perf_counter()
            mirrored = images.resize(pixels, images.working_shape(*pixels.shape[:2], flip_size, stride))[:, ::-1]
            maps.logits[name]["flip"] = model.class_map(np.ascontiguousarray(mirrored)[None])[0][:, ::-1]
            maps.seconds["flip"] += time.perf_counter() - start
    return maps


# ------------------------------------------------------------------------------------------ calibration

def term_evidence(evidence: np.ndarray, names=NAMES) -> dict[str, np.ndarray]:
    """A photo's ``(9, K)`` class evidence -> each mapped class's summed evidence per cell."""
    return {name: evidence[:, MAPPING[name]].sum(axis=-1) for name in names}


def priors_of(evidence: list[np.ndarray]) -> np.ndarray:
    """Mean evidence per class and cell over photos, floored (`PRIOR_FLOOR_QUANTILE`)."""
    prior = np.concatenate(evidence).mean(axis=0)
    return np.maximum(prior, np.quantile(prior, PRIOR_FLOOR_QUANTILE))


def _isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing fit of ``y`` on sorted ``x``, as (block x, block mean)."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order].astype(float)
    means, weights, starts, ends = [], [], [], []
    for xi, yi in zip(x, y):
        means.append(yi), weights.append(1.0), starts.append(xi), ends.append(xi)
        while len(means) > 1 and means[-2] > means[-1]:
            w = weights[-2] + weights[-1]
            m = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
            means[-2:], weights[-2:], starts[-2:], ends[-2:] = [m], [w], [starts[-2]], [ends[-1]]
    return (np.array(starts) + np.array(ends)) / 2, np.array(means)


def fit_curve(u: np.ndarray, occupied: np.ndarray) -> tuple[tuple[float, float], ...]:
    """`KNOTS` knots of the isotonic fit of occupancy on ``u``, placed at quantiles of the occupied cells'
    ``u`` (where the curve rises) plus the median of all, rising strictly (`MIN_RISE`)."""
    block_u, block_p = _isotonic(u, occupied)
    at = np.unique(np.concatenate([[np.median(u)], np.quantile(u[occupied == 1], np.linspace(0, 1, KNOTS - 1))]))
    p = np.interp(at, block_u, block_p)
    knots = []
    for ui, pi in zip(at, p):
        if knots and pi < knots[-1][1] + MIN_RISE:
            pi = knots[-1][1] + MIN_RISE
        knots.append((float(ui), float(min(pi, 1.0))))
    return tuple(knots)


def fit(evidence: dict[str, np.ndarray], truth: Truth, photos, model: str, size: int) -> Calibration:
    """Priors from the photos' evidence (no labels needed), the curve from their occupied and absent cells."""
    prior = priors_of([evidence[p] for p in photos])
    u, y = [], []
    for photo in photos:
        for name, values in term_evidence(evidence[photo]).items():
            known = truth.cell[photo][name] >= 0
            u.append(values[known] / prior[list(MAPPING[name])].sum() ** BETA)
            y.append(truth.cell[photo][name][known])
    knots = fit_curve(np.concatenate(u), np.concatenate(y))
    return Calibration(
        f"{model}/{size}/{CALIBRATION_VERSION}", model, size, BETA, tuple(float(p) for p in prior), knots, True,
        f"fitted by bench/retrieval_quality.py --fit on {len(photos)} photos of realscenes-dev",
    )


def confidences(cal: Calibration, evidence: np.ndarray) -> dict[str, np.ndarray]:
    """Each mapped class's calibrated confidence per cell, as `indexer.calibration` computes it."""
    return {
        name: np.array([cal.probability(float(e), MAPPING[name]) for e in values])
        for name, values in term_evidence(evidence).items()
    }


# ------------------------------------------------------------------------------------------------ study

def _position_probabilities(logits: np.ndarray) -> np.ndarray:
    h, w, k = logits.shape
    return regions.softmax(logits.reshape(h * w, k).astype(np.float32))


def _cells_of_positions(geometry) -> np.ndarray:
    """(positions, 9) membership: the positions owning some of each cell."""
    weights = geometry.cell_weights()
    return weights.reshape(-1, 9) > 0


def owned(maps: Maps, photo: str, size: int) -> np.ndarray:
    weights = maps.geometry[photo][size].cell_weights()
    return weights.reshape(-1, 9).T @ _position_probabilities(maps.logits[photo][size])


def windowed(maps: Maps, photo: str, size, margin: float, flip: bool = False) -> np.ndarray:
    geometry = maps.geometry[photo][size]
    logits = maps.logits[photo][size].astype(np.float32)
    if flip:
        logits = (logits + maps.logits[photo]["flip"]) / 2
    weights = geometry.window_weights(margin).reshape(-1, 9)
    return regions.softmax(weights.T @ logits.reshape(-1, logits.shape[-1]))


def pooled(maps: Maps, photo: str, size: int, how: str) -> np.ndarray:
    probs = _position_probabilities(maps.logits[photo][size])
    member = _cells_of_positions(maps.geometry[photo][size])
    out = []
    for cell in range(9):
        p = probs[member[:, cell]]
        if how == "max":
            out.append(p.max(axis=0))
        elif how == "top3":
            out.append(np.sort(p, axis=0)[-3:].mean(axis=0))
        elif how == "noisy-or":
            out.append(1 - np.prod(1 - p, axis=0))
        elif how == "coverage":
            out.append(np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / len(p))
    return np.stack(out)


def shipped_evidence(maps: Maps, photo: str) -> np.ndarray:
    """What the indexer stores for the photo (`indexer.regions.cell_evidence` of its views)."""
    return regions.cell_evidence(maps.views[photo])[0][0]


def standardised_logits(maps: Maps, photos, size: int) -> dict[str, np.ndarray]:
    """Non-competing evidence: each class's window-pooled logit as a z-score over the collection, through a
    logistic so it lies in [0, 1] (not a probability mass: groups take their best class)."""
    raw = {}
    for photo in photos:
        logits = maps.logits[photo][size].astype(np.float32)
        weights = maps.geometry[photo][size].window_weights(0.5).reshape(-1, 9)
        raw[photo] = weights.T @ logits.reshape(-1, logits.shape[-1])
    stacked = np.concatenate(list(raw.values()))
    mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
    return {photo: 1 / (1 + np.exp(-(raw[photo] - mean) / std + 3)) for photo in photos}


def _answers(term_scores: dict[str, dict[str, np.ndarray]], threshold: float):
    def cells_of(photo, name):
        return {c for c in range(9) if term_scores[photo][name][c] >= threshold}

    def pairs_of(query):
        a, ca, b, cb = query
        return {p for p, s in term_scores.items() if s[a][ca] >= threshold and s[b][cb] >= threshold}

    return cells_of, pairs_of


def sweep(truth: Truth, term_scores, grid) -> tuple[float, Levels, float]:
    """The threshold with the best image F1 + cell F1, its figures, and the best pair recall at pair
    precision >= `PAIR_PRECISION` over the grid."""
    best, best_pair = None, 0.0
    for threshold in grid:
        levels = score(truth, *_answers(term_scores, threshold), list(term_scores))
        key = levels.total("image").f1 + levels.total("cell").f1
        if best is None or key > best[0]:
            best = (key, threshold, levels)
        if levels.pair.precision >= PAIR_PRECISION:
            best_pair = max(best_pair, levels.pair.recall)
    return best[1], best[2], best_pair


def per_class_confidences(cal: Calibration, evidence: np.ndarray) -> dict[str, np.ndarray]:
    """The alternative to `confidences`: each class calibrated alone, then summed over a label (capped at 1)."""
    single = np.array([[cal.probability(float(e), (k,)) for k, e in enumerate(row)] for row in evidence])
    return {name: np.minimum(1.0, single[:, MAPPING[name]].sum(axis=-1)) for name in NAMES}


def cross_validated(evidence: dict[str, np.ndarray], truth: Truth, per_class: bool = False):
    """Calibrated confidences of every photo, each from a calibration fitted on the other folds."""
    photos = sorted(evidence)
    folds = np.array_split(np.random.default_rng(0).permutation(len(photos)), FOLDS)
    scores = {}
    for fold in folds:
        held = {photos[i] for i in fold}
        cal = fit(evidence, truth, [p for p in photos if p not in held], "study", 0)
        for photo in held:
            scores[photo] = (per_class_confidences if per_class else confidences)(cal, evidence[photo])
    return scores


def _max_scores(evidence: np.ndarray) -> dict[str, np.ndarray]:
    return {name: evidence[:, MAPPING[name]].max(axis=-1) for name in NAMES}


def study(model, photos: dict[str, np.ndarray], truth: Truth) -> None:
    sizes = (224, 336, 448)
    maps = class_maps(model, photos, sizes, flip_size=336)
    n = len(photos)
    names = list(photos)

    def timed(fn) -> tuple[dict[str, np.ndarray], float]:
        start = time.perf_counter()
        result = {p: fn(p) for p in names}
        return result, (time.perf_counter() - start) / n

    def one_view(size: int, margin: float):
        return lambda p: (owned(maps, p, size) + windowed(maps, p, size, margin)) / 2

    variants = [
        ("today: mean softmax @448 (old scoring)", (448,), lambda p: owned(maps, p, 448)),
        ("mean softmax @336", (336,), lambda p: owned(maps, p, 336)),
        ("max softmax @448", (448,), lambda p: pooled(maps, p, 448, "max")),
        ("top-3 mean @448", (448,), lambda p: pooled(maps, p, 448, "top3")),
        ("noisy-or @448", (448,), lambda p: pooled(maps, p, 448, "noisy-or")),
        ("coverage @448", (448,), lambda p: pooled(maps, p, 448, "coverage")),
        ("window logits, cell alone @448", (448,), lambda p: windowed(maps, p, 448, 0.0)),
        ("window logits, +half a cell @336", (336,), lambda p: windowed(maps, p, 336, 0.5)),
        ("one view: mean+window, cell alone @224", (224,), one_view(224, 0.0)),
        ("one view: mean+window, cell alone @448", (448,), one_view(448, 0.0)),
        ("one view: mean+window, +half a cell @336", (336,), one_view(336, 0.5)),
        ("one view: mean+window, +half a cell @448", (448,), one_view(448, 0.5)),
        ("mean @448 + window, +half a cell @336", (448, 336), lambda p: (owned(maps, p, 448) + windowed(maps, p, 336, 0.5)) / 2),
        ("one view @336, flip-averaged", (336, "flip"),
         lambda p: (owned(maps, p, 336) + windowed(maps, p, 336, 0.5, flip=True)) / 2),
        ("two views: mean+window cell alone @448, mean+window +half a cell @336", (448, 336),
         lambda p: (one_view(448, 0.0)(p) + one_view(336, 0.5)(p)) / 2),
        ("mean+window cell alone @448, mean @336, not damped off peak", (448, 336),
         lambda p: (owned(maps, p, 448) + windowed(maps, p, 448, 0.0) + owned(maps, p, 336)) / 3),
        ("shipped: the same, damped below 0.3 of the peak", ("views",), lambda p: shipped_evidence(maps, p)),
    ]
    today_cost = None
    print(f"\n## study: {n} photos, {model.name} ({model.precision}); model ms/image per pass: "
          + ", ".join(f"{k}: {1000 * v / n:.1f}" for k, v in maps.seconds.items()))
    print("| variant | cost/image (x today) | uncalibrated: best threshold -> image F1, cell F1 | pair R@P>=0.6 | "
          "calibrated, 5-fold CV: threshold -> image F1, cell F1, pair P/R | pair R@P>=0.6 |")
    print("|---|---|---|---|---|---|")
    for name, passes, fn in variants:
        evidence, scoring = timed(fn)
        cost = sum(maps.seconds[s] for s in passes) / n + scoring
        today_cost = today_cost or cost
        raw = {p: term_evidence(evidence[p]) for p in names}
        t_raw, raw_levels, raw_pair = sweep(truth, raw, EVIDENCE_GRID)
        t_cal, cal_levels, cal_pair = sweep(truth, cross_validated(evidence, truth), CONFIDENCE_GRID)
        print(f"| {name} | {1000 * cost:.0f} ms ({cost / today_cost:.2f}x) | {t_raw:g} -> "
              f"{raw_levels.total('image').f1:.3f}, {raw_levels.total('cell').f1:.3f} | {raw_pair:.2f} | {t_cal:g} -> "
              f"{cal_levels.total('image').f1:.3f}, {cal_levels.total('cell').f1:.3f}, "
              f"{cal_levels.pair.precision:.2f}/{cal_levels.pair.recall:.2f} | {cal_pair:.2f} |", flush=True)
    shipped = {p: shipped_evidence(maps, p) for p in names}
    t_pc, pc_levels, pc_pair = sweep(truth, cross_validated(shipped, truth, per_class=True), CONFIDENCE_GRID)
    print(f"| shipped, calibrated per class and then summed over a label | same | - | - | {t_pc:g} -> "
          f"{pc_levels.total('image').f1:.3f}, {pc_levels.total('cell').f1:.3f}, "
          f"{pc_levels.pair.precision:.2f}/{pc_levels.pair.recall:.2f} | {pc_pair:.2f} |")
    z = standardised_logits(maps, names, 336)
    t_z, z_levels, z_pair = sweep(truth, {p: _max_scores(z[p]) for p in names}, CONFIDENCE_GRID)
    print(f"| window logits @336 standardised per class (no competition; best class of a group) | same pass | "
          f"{t_z:g} -> {z_levels.total('image').f1:.3f}, {z_levels.total('cell').f1:.3f} | {z_pair:.2f} | - | - |")


# ----------------------------------------------------------------------------------- through the index

def index_folder(model, folder: Path, db: Path, size: int | None = None):
    engine = store.open_index(str(db))
    start = time.perf_counter()
    summary = pipeline.index(engine, [folder], lambda settings: model, model=model.name, size=size,
                             precision=model.precision, runtime=getattr(model, "runtime", runtimes.TF))
    wall = time.perf_counter() - start - summary.load_seconds
    assert summary.failed == 0, summary.failures
    return engine, summary, wall


def _class_set_query(engine, tables, cal, terms: list[tuple[tuple[int, ...], str]], min_score: float):
    """Run ``t0 REGION AND t1 REGION ...`` with each term's classes given (the hand-made mapping)."""
    text = " AND ".join(f"t{i} {region}" for i, (_, region) in enumerate(terms))
    tree = parse(text)
    found = [n for n in _terms(tree)]
    resolutions = {
        term: Resolution(term.label, term.label, (Sense("group", "bench", term.label, classes),))
        for term, (classes, _) in zip(found, terms)
    }
    compiled = compile_query(tables, tree, resolutions, min_score=min_score, limit=None,
                             dialect=engine.dialect.name, calibration=cal)
    return execute(engine, Prepared(text, tree, resolutions, compiled, min_score, 0))


def _terms(node):
    if isinstance(node, Term):
        yield node
    else:
        for child in getattr(node, "children", ()):
            yield from _terms(child)


#: What a typed word may read, for the side-by-side figures: every class it resolves to, the classifier's
#: (ImageNet's 1000) alone, or the detectors' (the 80 COCO objects and the face) alone.
SOURCES = {
    "both": lambda class_id: True,
    "classifier": lambda class_id: class_id < labels.NUM_CLASSES,
    "detector": lambda class_id: class_id in calibration.AS_STORED,
}


def restricted(resolutions: dict[Term, Resolution], source: str) -> dict[Term, Resolution]:
    """Each term's resolution with only the classes ``source`` answers from (`SOURCES`); a term left with none
    raises `UnknownLabelError`, as a word that source cannot answer returns nothing."""
    keep = SOURCES[source]
    narrowed = {}
    for term, resolution in resolutions.items():
        senses = tuple(replace(sense, classes=tuple(c for c in sense.classes if keep(c))) for sense in resolution.senses)
        senses = tuple(sense for sense in senses if sense.classes)
        if not senses:
            raise UnknownLabelError(term.label, [], f"not answered by the {source}")
        narrowed[term] = replace(resolution, senses=senses)
    return narrowed


def _typed_query(engine, tables, cal, text: str, min_score: float, source: str, fusion: str | None):
    """``text`` as the query engine runs it, its words answered from ``source`` only."""
    if source == "both":
        return search(engine, text, min_score=min_score, limit=None, tables=tables, calibration=cal, fusion=fusion)
    tree, resolutions = resolve(parse(text), text)
    narrowed = restricted(resolutions, source)
    compiled = compile_query(tables, tree, narrowed, min_score=min_score, limit=None,
                             dialect=engine.dialect.name, calibration=cal, fusion=fusion or calibration.FUSION)
    return execute(engine, Prepared(text, tree, narrowed, compiled, min_score, 0))


def evaluate_index(engine, truth: Truth, photos_by_path: dict[str, str], min_score: float, as_typed: bool,
                   names=NAMES, source: str = "both", fusion: str | None = None):
    """Levels of the index's answers; ``as_typed``: the names through the resolver (refusals returned), read
    from ``source`` (`SOURCES`) and fused by ``fusion`` (default: the index's rule); otherwise the hand-made
    `MAPPING`'s ImageNet classes."""
    tables = store.tables(engine)
    with engine.connect() as conn:
        cal = store.read_calibration(conn)
    refused: list[str] = []
    cells: dict[tuple[str, str], set[int]] = {}

    def run(terms_text: str, terms: list[tuple[tuple[int, ...], str]]):
        if as_typed:
            return _typed_query(engine, tables, cal, terms_text, min_score, source, fusion)
        return _class_set_query(engine, tables, cal, terms, min_score)

    for name in names:
        try:
            result = run(name, [(MAPPING.get(name, ()), "anywhere")])
        except (QueryError, UnknownLabelError) as exc:
            refused.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        for match in result.matches:
            cells[(photos_by_path[match.path], name)] = {CELL_NAMES.index(c) for c in match.terms[0].cells}

    def pairs_of(query):
        a, ca, b, cb = query
        if any(r.startswith(f"{x}:") for r in refused for x in (a, b)):
            return set()
        result = run(f"{a} in {CELL_NAMES[ca]} AND {b} in {CELL_NAMES[cb]}",
                     [(MAPPING.get(a, ()), CELL_NAMES[ca]), (MAPPING.get(b, ()), CELL_NAMES[cb])])
        return {photos_by_path[m.path] for m in result.matches}

    levels = score(truth, lambda photo, name: cells.get((photo, name), set()), pairs_of, list(truth.image), names)
    return levels, refused


def per_class_table(levels: Levels, names=NAMES) -> None:
    print("| class | image P | image R | image n | cell P | cell R | cell n |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        i, c = levels.image[name], levels.cell[name]
        if i.tp + i.fn + i.fp + c.tp + c.fn + c.fp:
            print(f"| {name} | {i.precision:.2f} | {i.recall:.2f} | {i.tp + i.fn} | {c.precision:.2f} | "
                  f"{c.recall:.2f} | {c.tp + c.fn} |")


# -------------------------------------------------------------------------------------------- composites

#: Canvas of a composite, and what makes a box a usable crop.
COMPOSITE_HW = (480, 640)
MIN_CROP_AREA = 0.04
MIN_CROP_SIDE = 48
CROP_MARGIN = 0.1
COMPOSITES = 80


@dataclass
class Crop:
    name: str
    pixels: np.ndarray
    others: frozenset[str]  # mapped classes also clearly inside the crop: ignored in its cell


def crops(annotations: dict, photos: dict[str, np.ndarray], names=NAMES) -> list[Crop]:
    found = []
    for photo, entry in sorted(annotations.items()):
        width, height = entry["width"], entry["height"]
        for obj in entry["objects"]:
            x0, y0, x1, y1 = obj["box"]
            if obj["class"] not in names or (x1 - x0) * (y1 - y0) < MIN_CROP_AREA * width * height:
                continue
            if min(x1 - x0, y1 - y0) < MIN_CROP_SIDE:
                continue
            mx, my = CROP_MARGIN * (x1 - x0), CROP_MARGIN * (y1 - y0)
            box = (max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my))
            others = frozenset(
                o["class"] for o in entry["objects"]
                if o["class"] in names and o["class"] != obj["class"] and _overlap(o["box"], box) >= 0.5 * _area(o["box"])
                and _area(o["box"]) >= 0.05 * _area(box)
            )
            pixels = photos[photo][round(box[1]) : round(box[3]), round(box[0]) : round(box[2])]
            found.append(Crop(obj["class"], pixels, others))
    return found


def composite_set(pieces: list[Crop], count: int, seed: int = 0, names=NAMES):
    """``count`` canvases, each with 1-4 crops of distinct classes in distinct cells; and their truth."""
    rng = np.random.default_rng(seed)
    height, width = COMPOSITE_HW
    made = []
    for _ in range(count):
        k = int(rng.integers(1, 5))
        chosen: list[Crop] = []
        for i in rng.permutation(len(pieces)):
            if pieces[i].name not in {c.name for c in chosen}:
                chosen.append(pieces[i])
            if len(chosen) == k:
                break
        cells = [int(c) for c in rng.choice(9, size=len(chosen), replace=False)]
        canvas = np.full((height, width, 3), 128, np.uint8)
        state = {name: np.zeros(9, int) for name in names}
        for crop, cell in zip(chosen, cells):
            x0, y0, x1, y1 = (round(v) for v in _cell_box(width, height, cell))
            ch, cw = crop.pixels.shape[:2]
            scale = min((y1 - y0) / ch, (x1 - x0) / cw)
            h, w = max(1, round(ch * scale)), max(1, round(cw * scale))
            top, left = y0 + (y1 - y0 - h) // 2, x0 + (x1 - x0 - w) // 2
            canvas[top : top + h, left : left + w] = np.asarray(Image.fromarray(crop.pixels).resize((w, h)))
            state[crop.name][cell] = 1
            for other in crop.others:
                if state[other][cell] == 0:
                    state[other][cell] = -1
        made.append((canvas, state, chosen))
    return made


def evaluate_composites(model, pieces: list[Crop], work: Path, min_score: float, label: str,
                        names=NAMES, as_typed: bool = False) -> None:
    made = composite_set(pieces, COMPOSITES, names=names)
    folder = work / f"composites-{label}"
    folder.mkdir()
    truth = Truth({}, {}, {})
    by_path = {}
    for i, (canvas, state, chosen) in enumerate(made):
        path = folder / f"c{i:03d}.png"
        Image.fromarray(canvas).save(path)
        key = path.name
        by_path[str(path)] = key
        truth.cell[key] = state
        truth.image[key] = {
            name: int((s == 1).any()) for name, s in state.items() if (s == 1).any() or not (s == -1).any()
        }
        truth.main_cell[key] = {}
    engine, _, _ = index_folder(model, folder, work / f"composites-{label}.db")
    levels, _ = evaluate_index(engine, truth, by_path, min_score, as_typed=as_typed, names=names)
    engine.dispose()
    print(f"composites ({label}: {len(pieces)} crops, {len(made)} canvases): cell {levels.total('cell').text()} | "
          f"image {levels.total('image').text()}")


def recognised(model, pieces: list[Crop]) -> list[Crop]:
    """The crops whose own top-1 class (the network's global prediction at 224) is in their mapping."""
    stride = total_stride(model.layers)
    kept = []
    for crop in pieces:
        shape = images.working_shape(*crop.pixels.shape[:2], 224, stride)
        top = int(model.class_map(images.resize(crop.pixels, shape)[None])[0].mean(axis=(0, 1)).argmax())
        if top in MAPPING[crop.name]:
            kept.append(crop)
    return kept


# ------------------------------------------------------------------------------------------ box calibration

def box_cells(engine, truth: Truth, photos_by_path: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The object detector's raw score in every known cell (`Truth.cell` not ignored) where a stored box of the
    class counts (`indexer.boxes.occupied`: the best such box), and whether the class occupies the cell."""
    t = store.tables(engine)
    with engine.connect() as conn:
        sizes = {row.image_id: (row.path, row.width, row.height)
                 for row in conn.execute(sa.select(t.images.c.image_id, t.images.c.path, t.images.c.width, t.images.c.height))}
        found = store.boxes_of(conn, list(sizes))
    values, occupied = [], []
    for image_id, (path, width, height) in sizes.items():
        photo = photos_by_path.get(path)
        if photo is None:
            continue
        cells = geometry.cell_bounds(width, height)
        best = defaultdict(lambda: np.zeros(9))
        for box in found.get(image_id, []):
            if labels.is_object_class(box.class_id):
                where, _ = boxes.occupied(box, cells)
                name = labels.COCO_CLASSES[box.class_id - labels.OBJECT_CLASS_BASE]
                best[name] = np.maximum(best[name], np.where(where, box.confidence, 0.0))
        for name, value in best.items():
            known = (truth.cell[photo][name] >= 0) & (value > 0)
            values.append(value[known])
            occupied.append(truth.cell[photo][name][known])
    return np.concatenate(values), np.concatenate(occupied).astype(float)


def fit_boxes(values: np.ndarray, occupied: np.ndarray, photos: int) -> calibration.BoxCalibration:
    """`calibration.BoxCalibration`'s two numbers by logistic regression (Newton's method) of occupancy on
    the logit of the raw score: two global parameters, as the dev photos are in the detector's training set."""
    clipped = np.clip(values, calibration.BOX_SCORE_LIMIT, 1 - calibration.BOX_SCORE_LIMIT)
    x = np.stack([np.ones_like(clipped), np.log(clipped / (1 - clipped))], axis=1)
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        w -= np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2), x.T @ (p - occupied))
    return calibration.BoxCalibration(
        f"nanodet-m/{BOX_CALIBRATION_VERSION}", round(float(w[0]), 4), round(float(w[1]), 4),
        f"fitted by bench/retrieval_quality.py --fit-boxes on {len(values)} cells of {photos} photos of "
        "realscenes-dev (COCO train2017: in the detector's training set, so optimistic)",
    )


# ------------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=DEV, help="the annotated photos (default: ../shared/realscenes-dev)")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precision", default="auto", choices=runtimes.PRECISIONS)
    parser.add_argument("--runtime", default="auto", choices=runtimes.RUNTIMES)
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
    parser.add_argument("--study", action="store_true", help="compare the variants (part 3)")
    parser.add_argument("--fit", action="store_true", help="fit and write the shipped calibration (part 4)")
    parser.add_argument("--no-composites", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="--min-score sweep per source and fusion rule")
    parser.add_argument("--fit-boxes", action="store_true", help="fit and write the object detector's calibration")
    int8_accuracy.add_recipe_option(parser)
    args = parser.parse_args()
    int8_accuracy.use_recipe(args.model, args.int8_recipe)

    annotations = json.loads((args.dev / "annotations.json").read_text())["images"]
    truth = truths(annotations)
    print(f"# retrieval quality: {len(annotations)} photos of {args.dev.name}: all {len(TYPED)} COCO classes typed "
          f"as a person would; also the {len(NAMES)} ImageNet-1k can express, by the hand-made mapping. These "
          "photos are COCO train2017, in the object detector's training set: its figures here are in-sample.")
    model = runtimes.load(args.model, args.weights, args.runtime, args.precision, size=DEFAULT_WORKING_SIZE,
                          on_build=print)
    photos = {name: images.load(args.dev / "images" / name).pixels for name in sorted(annotations)}

    if args.fit:
        maps = class_maps(model, photos, ())
        evidence = {p: shipped_evidence(maps, p) for p in photos}
        cal = fit(evidence, truth, list(photos), model.name, DEFAULT_WORKING_SIZE)
        target = ROOT / "indexer" / calibration.path_for(model.name)
        target.write_text(cal.to_json() + "\n")
        calibration.for_model.cache_clear()
        print(f"wrote {target.relative_to(ROOT)}: {cal.version}, knots {[(round(u, 3), round(p, 3)) for u, p in cal.knots]}")
    if args.study:
        study(model, photos, truth)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "dev"
        folder.mkdir()
        for name in annotations:
            (folder / name).symlink_to((args.dev / "images" / name).resolve())
        by_path = {str(folder / name): name for name in annotations}
        engine, summary, wall = index_folder(model, folder, work / "dev.db")
        scales, regions.SCALES = regions.SCALES, regions.SCALES[:1]  # today's model work: the one fine pass
        try:
            _, one_pass, wall_one = index_folder(model, folder, work / "one-pass.db")
        finally:
            regions.SCALES = scales
        print(f"\n## shipped: {summary.settings.describe()}, --min-score {args.min_score:g}")
        print(f"indexing (decode, model, scoring, commit): {1000 * wall / summary.indexed:.0f} ms/image with the "
              f"views {regions.SCALES}, {1000 * wall_one / one_pass.indexed:.0f} ms/image with today's one view at "
              f"the same size, measured in this run: {wall / summary.indexed / (wall_one / one_pass.indexed):.2f}x")
        typed_truth = truths(annotations, TYPED)
        print(f"\n### all {len(TYPED)} COCO classes typed as a person would ({len(pair_queries(typed_truth))} pair "
              "queries), at the defaults: the headline")
        by_source = {}
        for source in SOURCES:
            found, refused = evaluate_index(engine, typed_truth, by_path, args.min_score, True, TYPED, source)
            by_source[source] = found
            print(f"  {source:<10} {line(found)}; {len(refused)} refused")
        typed = by_source["both"]
        print("  counts (true / false positives, false negatives): " + ", ".join(
            f"{level} {c.tp}/{c.fp}/{c.fn} (F1 {c.f1:.4f})"
            for level, c in (("image", typed.total("image")), ("cell", typed.total("cell")), ("pair", typed.pair))))
        if args.sweep:
            print("--min-score sweep of the typed words, each source and each fusion rule of both:")
            rules = [("classifier", None, None), ("detector", None, None), ("both", "max", None),
                     ("both", "noisy_or", None)] + [("both", "weighted", w) for w in FUSION_WEIGHTS]
            for source, rule, weight in rules:
                kept = calibration.LAMBDA
                calibration.LAMBDA = weight if weight is not None else kept
                try:
                    for threshold in MIN_SCORE_SWEEP:
                        swept, _ = evaluate_index(engine, typed_truth, by_path, threshold, True, TYPED, source, rule)
                        name = source + (f" {rule}" if rule else "") + (f" {weight:g}" if weight is not None else "")
                        print(f"  {name:<18} {threshold:<5g} {line(swept)}", flush=True)
                finally:
                    calibration.LAMBDA = kept
        if args.fit_boxes:
            fitted = fit_boxes(*box_cells(engine, typed_truth, by_path), len(annotations))
            target = ROOT / "indexer" / calibration.BOX_CALIBRATION_PATH
            target.write_text(fitted.to_json() + "\n")
            calibration.boxes.cache_clear()
            print(f"wrote {target.relative_to(ROOT)}: {fitted}; rerun without --fit-boxes for the figures it gives")
        levels, _ = evaluate_index(engine, truth, by_path, args.min_score, as_typed=False)
        print(f"\n### the {len(NAMES)} classes ImageNet-1k can express, hand-made mapping (classifier only, comparable "
              f"with the figures before the detector) at {args.min_score:g}: {line(levels)}")
        print("\nper class, all words typed, both sources:")
        per_class_table(typed, TYPED)
        engine.dispose()
        if not args.no_composites:
            pieces = crops(annotations, photos, TYPED)
            evaluate_composites(model, pieces, work, args.min_score, "all crops, typed", TYPED, as_typed=True)
            mapped = crops(annotations, photos)
            evaluate_composites(model, mapped, work, args.min_score, "ImageNet-expressible crops, hand-made mapping")


if __name__ == "__main__":
    main()
