"""What a stored score means: evidence in the index, a calibrated probability everywhere a person reads one.

The index stores *evidence* per cell and class (`indexer.regions`): a probability mass, so a label's
evidence in a cell is the sum over its classes. Evidence alone is not comparable between labels: a class
the network names often (``plate``) has much more of it in an ordinary photo than one it names rarely
(``handbag``), and classes that share a photo split one unit of probability. So a label ``K`` with evidence
``E`` in a cell gets the confidence

    ``P = curve(E / prior(K) ** beta)``,   ``prior(K) = sum of prior[k] over K's classes``

where ``prior[k]`` is class ``k``'s mean evidence per cell over a reference collection (the evidence that is
no news), ``beta`` how strongly that is discounted, and ``curve`` a non-decreasing piecewise-linear
function fitted so that ``P`` estimates the chance that the label really occupies the cell
(``bench/retrieval_quality.py --fit``, on annotated everyday photos). For a fixed label ``P`` rises with
``E``, so a threshold on ``P`` is a threshold on the stored evidence (`evidence_for`): queries still run on
the class index.

Detectors store probabilities, not evidence: the face detector's faces and the object detector's COCO
classes (`AS_STORED`) are read as they are. A label answered by both kinds (``dog``: 118 ImageNet breeds
and the detector's dog) gets one confidence per cell from its two parts through one rule, `fuse`.

One calibration belongs to one model and one kind of evidence; its ``version`` is recorded in the index,
and an index is only read with the calibration it was built with. It is fitted at the default working size
(``working_size``); an index built at another ``--size`` reads its evidence through the same curve, which
then holds only roughly. A model with no fitted calibration
(VGG-16 until its real weights are at hand to fit one) reads its evidence as it is (`uncalibrated`).
Pure Python: the query path reads it without numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Callable, Iterable, Mapping, TypeVar

from indexer.errors import ImgidxError
from indexer.labels import COCO_CLASSES, FACE_CLASS, NUM_CLASSES, OBJECT_CLASS_BASE, is_compound

#: Knots are kept strictly increasing in ``P`` by at least this much, so `evidence_for` is exact.
MIN_RISE = 1e-6
#: Labels whose stored scores are probabilities already, read as they are: faces (the face detector's
#: confidence, `indexer.faces`) and the object detector's COCO classes. A label that has such classes and
#: others too reads its two parts through `fuse`; the curve here sees only the classes of the model.
AS_STORED = frozenset({FACE_CLASS, *range(OBJECT_CLASS_BASE, OBJECT_CLASS_BASE + len(COCO_CLASSES))})

#: The rules `fuse` knows, by name.
FUSIONS = ("max", "noisy_or", "weighted")
#: The rule every query and every reported score uses (a query may name another: `query.search.search`'s
#: ``fusion``, for the bench). Chosen by measurement on the bench (issue 20).
FUSION = "weighted"
#: The rule of an index built without the object detector (``--no-objects``, or upgraded from before it):
#: its words of both kinds have no detector part but the face, so they read as before the detector, the
#: better of the two parts, rather than be discounted for a detector that never looked (`fusion_for`).
WITHOUT_OBJECTS = "max"
#: Rules that commute with any non-decreasing curve ``f``: ``fuse(f(a), f(b)) == f(fuse(a, b))``. A query
#: reads a term under such a rule in the classifier's evidence space, a detector probability ``p`` counting
#: as the evidence whose confidence is ``p`` (`Calibration.evidence_for`), and calibrates once per image, as
#: for ImageNet's classes alone; the other rules are computed cell by cell on confidences.
MONOTONE_FUSIONS = frozenset({"max"})
#: The rule of a term whose detector classes come only through WordNet groups (``mammal``, ``vehicle``,
#: WordNet's food ``n00021265``), whatever the index's: most of a group's classifier classes have no
#: counterpart among the detector's 80, so a detector that saw none of them says little against the
#: classifier. Under ``weighted`` such a term would read half the classifier's confidence (on composites,
#: espresso as ``n00021265`` fell from 0.52 to 0.26, under the default threshold). `FUSION` was measured on
#: the words that name a detector's class, and is theirs (`term_fusion`).
GROUP_FUSION = "max"
#: The classifier's weight in the ``weighted`` rule: with it the rule gave image/cell F1 0.723/0.725 at
#: the default --min-score on realscenes-dev's 80 COCO words (0.3: 0.714/0.714; 0.7: 0.726/0.724), against
#: 0.686/0.704 for ``max`` (bench/retrieval_quality.py --sweep, bench/RESULTS.md).
LAMBDA = 0.5
#: The confidence a term needs in a cell when the query gives none (``--min-score``), and from which boxes
#: are drawn: with the object detector, 0.4 gave the best image + cell F1 of the 80 COCO words typed on
#: realscenes-dev with pair precision >= 0.85 (bench/retrieval_quality.py --sweep; 0.3 was the classifier's
#: own best before the detector).
DEFAULT_MIN_SCORE = 0.4
#: Each rule in words, for the help and the README's readers.
FUSION_WORDS = {
    "max": "the better of the two",
    "noisy_or": "1 - (1 - detector) x (1 - classifier)",
    "weighted": f"the detector's plus {LAMBDA:g} x the classifier's, at most 1",
}

#: How far below the exact floor `fuse_floor` reports, so rounding never drops a cell at the threshold itself.
FLOOR_MARGIN = 1e-9

Number = TypeVar("Number")


class UnknownFusionError(ImgidxError):
    """A fusion rule `fuse` does not know."""


def fuse(detector: Number, classifier: Number, rule: str = FUSION,
         greatest: Callable = max, least: Callable = min) -> Number:
    """The one confidence of a label answered by two sources in one cell.

    ``detector`` is the best stored probability of its detector classes there (faces, COCO objects: the
    better box of two speaks for the cell, they are not summed), ``classifier`` the calibrated confidence of
    its ImageNet classes' summed evidence there; a part without a row in the cell is 0. The rules:

    - ``max``: the better of the two. Either source alone finds the thing, and agreement counts once.
    - ``noisy_or``: ``1 - (1 - detector) * (1 - classifier)``, as if the two erred independently, so
      agreement raises the confidence.
    - ``weighted``: ``min(1, detector + LAMBDA * classifier)``: the detector leads, the classifier adds to it.

    The same code builds the SQL of a query (numbers are then SQL expressions, ``greatest`` and ``least``
    the dialect's two-argument max and min), so what a query compares and what `Calibration.label_confidence`
    reports cannot drift apart.
    """
    if rule == "max":
        return greatest(detector, classifier)
    if rule == "noisy_or":
        return 1.0 - (1.0 - detector) * (1.0 - classifier)
    if rule == "weighted":
        return least(1.0, detector + LAMBDA * classifier)
    raise UnknownFusionError(f"unknown fusion rule {rule!r}; the rules are {', '.join(FUSIONS)}")


def fusion_for(objects: bool) -> str:
    """The rule a query uses on an index built with (``objects``) or without the object detector."""
    return FUSION if objects else WITHOUT_OBJECTS


def term_fusion(rule: str, grouped: bool) -> str:
    """The rule one term reads its two parts by: the query's ``rule``, or `GROUP_FUSION` for a term whose
    detector classes come only through WordNet groups (``grouped``: `query.resolve.Resolution.grouped`)."""
    return GROUP_FUSION if grouped else rule


def fuse_floor(confidence: float, rule: str = FUSION) -> float:
    """What the better part must reach for `fuse` to reach ``confidence``: ``fuse(a, b) >= confidence``
    implies ``max(a, b) >= fuse_floor(confidence)``, so a query finds a term's cells in the class index first."""
    if rule == "max":
        return confidence
    if rule == "noisy_or":
        return 1.0 - math.sqrt(1.0 - confidence) - FLOOR_MARGIN if confidence <= 1.0 else confidence
    if rule == "weighted":
        return confidence / (1.0 + LAMBDA) - FLOOR_MARGIN
    raise UnknownFusionError(f"unknown fusion rule {rule!r}; the rules are {', '.join(FUSIONS)}")


@dataclass(frozen=True)
class BoxCalibration:
    """The object detector's calibration: ``P = sigmoid(intercept + slope * logit(score))``, one curve for all
    of COCO's classes (a few global parameters: the dev photos are in the detector's training set, so nothing
    is fitted per class). ``P`` estimates the chance that the class occupies a cell where its box counts
    (`indexer.boxes.cell_scores`), as the classifier's curve does for its evidence, so one ``--min-score``
    asks the same of both. Fitted by ``bench/retrieval_quality.py --fit-boxes``."""

    version: str
    intercept: float
    slope: float
    note: str = ""

    def probability(self, score: float) -> float:
        score = min(max(score, BOX_SCORE_LIMIT), 1.0 - BOX_SCORE_LIMIT)
        z = self.intercept + self.slope * math.log(score / (1.0 - score))
        return 1.0 / (1.0 + math.exp(-z))

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "intercept": self.intercept, "slope": self.slope,
                           "note": self.note}, indent=1)


#: Scores are held this far inside (0, 1) before their logit is taken.
BOX_SCORE_LIMIT = 1e-6
#: Where the box calibration lives in the package.
BOX_CALIBRATION_PATH = "data/calibration-boxes.json"


@lru_cache(maxsize=1)
def boxes() -> BoxCalibration:
    """The object detector's shipped calibration."""
    data = json.loads(resources.files("indexer").joinpath(BOX_CALIBRATION_PATH).read_text(encoding="utf-8"))
    return BoxCalibration(data["version"], float(data["intercept"]), float(data["slope"]), data.get("note", ""))


def box_confidence(class_id: int, score: float) -> float:
    """The chance that a detector's box of ``class_id`` with ``score`` stands for its class where it counts:
    applied where boxes become cell rows (`indexer.boxes.cell_scores`) and where a box's confidence is shown
    (`indexer.boxes.label`). The object detector's scores go through `boxes`; the face detector's are read as
    they are (no annotated faces to fit them on). The cell rows are stored through it, so an index records
    its version (`index_version`) and a change asks for ``--reindex``."""
    if class_id == FACE_CLASS:
        return score
    return boxes().probability(score)


def read_as_stored(class_id: int) -> bool:
    """``class_id``'s scores are read as they are: a detector's class (`AS_STORED`), or a compound, whose rows
    hold the confidence a query would compute (`indexer.labels.is_compound`)."""
    return class_id in AS_STORED or is_compound(class_id)


def as_stored(classes: Iterable[int]) -> bool:
    """Every one of ``classes`` is read as stored (`read_as_stored`)."""
    classes = set(classes)
    return bool(classes) and all(read_as_stored(c) for c in classes)


class CalibrationError(ImgidxError):
    """A calibration file is malformed, or an index was built with another calibration than this imgidx's."""


@dataclass(frozen=True)
class Calibration:
    """Priors and curve of one model's evidence (module docstring); ``knots`` are ``(u, P)`` pairs."""

    version: str
    model: str
    working_size: int
    beta: float
    priors: tuple[float, ...]
    knots: tuple[tuple[float, float], ...]
    fitted: bool
    note: str

    def prior(self, classes: Iterable[int]) -> float:
        return sum(self.priors[c] for c in classes if c not in AS_STORED)

    def scale(self, classes: Iterable[int]) -> float:
        """The factor that turns a label's evidence into the curve's input ``u``."""
        return 1.0 / self.prior(classes) ** self.beta

    def curve(self, u: float) -> float:
        """``P`` at ``u``: linear between knots, flat beyond the first and the last."""
        knots = self.knots
        if u <= knots[0][0]:
            return knots[0][1]
        for (u0, p0), (u1, p1) in zip(knots, knots[1:]):
            if u <= u1:
                return p0 + (u - u0) * ((p1 - p0) / (u1 - u0))  # as the query's SQL computes it
        return knots[-1][1]

    def probability(self, evidence: float, classes: Iterable[int]) -> float:
        """The confidence of a label with ``evidence`` over ``classes`` (one cell, or a photo's best cell)."""
        classes = tuple(classes)
        if as_stored(classes):
            return min(1.0, evidence)
        return self.curve(evidence * self.scale(classes))

    def label_confidence(self, scores: Mapping[int, float], classes: Iterable[int], rule: str = FUSION) -> float | None:
        """A label's confidence in one cell from that cell's stored scores (class id -> score), the value a
        query gives it there (`query.compile`): the calibrated sum of its model classes' evidence, the best
        of its detector classes' probabilities, or `fuse` of the two when it has both; None where none of
        ``classes`` has a score."""
        classes = frozenset(classes)
        stored = [score for c, score in scores.items() if c in classes and c in AS_STORED]
        model = [score for c, score in scores.items() if c in classes and c not in AS_STORED]
        if not stored and not model:
            return None
        model_classes = classes - AS_STORED
        classifier = self.curve(sum(model) * self.scale(model_classes)) if model else 0.0
        if not classes & AS_STORED:
            return classifier
        detector = max(stored, default=0.0)
        return fuse(detector, classifier, rule) if model_classes else detector

    def evidence_for(self, probability: float, classes: Iterable[int]) -> float:
        """The least evidence whose confidence reaches ``probability``; infinity where none does."""
        classes = tuple(classes)
        if as_stored(classes):
            return probability if probability <= 1.0 else float("inf")
        knots = self.knots
        if probability <= knots[0][1]:
            return 0.0
        if probability > knots[-1][1]:
            return float("inf")
        for (u0, p0), (u1, p1) in zip(knots, knots[1:]):
            if probability <= p1:  # the query's SQL computes the same, in this order (`query.compile`)
                return (u0 + (probability - p0) * ((u1 - u0) / (p1 - p0))) * (1.0 / self.scale(classes))
        raise AssertionError("unreachable: the last knot reaches the probability")

    def to_json(self) -> str:
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields["knots"] = [list(k) for k in self.knots]
        return json.dumps(fields, indent=1)


def percent(probability: float) -> str:
    """How every text output shows a confidence, so one photo reads the same in `show`, `query` and the rest."""
    return f"{probability:.0%}"


#: Decimals of a confidence in JSON (the same number as `percent`, unrounded to the percent).
JSON_DECIMALS = 4


def from_json(text: str) -> Calibration:
    data = json.loads(text)
    knots = tuple((float(u), float(p)) for u, p in data["knots"])
    if len(knots) < 2 or any(u1 <= u0 or p1 < p0 + MIN_RISE / 2 for (u0, p0), (u1, p1) in zip(knots, knots[1:])):
        raise CalibrationError(f"calibration {data.get('version')!r}: knots must rise strictly in u and P")
    return Calibration(
        data["version"], data["model"], int(data["working_size"]), float(data["beta"]),
        tuple(float(p) for p in data["priors"]), knots, bool(data["fitted"]), data.get("note", ""),
    )


def path_for(model: str) -> str:
    """Where a model's calibration lives in the package (``bench/retrieval_quality.py --fit`` writes it)."""
    return f"data/calibration-{model}.json"


def uncalibrated(model: str) -> Calibration:
    """Evidence read as it is: ``P = E`` (capped at 1), every class alike."""
    return Calibration(
        f"{model}/uncalibrated", model, 0, 0.0, (1.0,) * NUM_CLASSES, ((0.0, 0.0), (1.0, 1.0)), False,
        "no calibration fitted for this model: scores are the evidence itself",
    )


@lru_cache(maxsize=None)
def for_model(model: str) -> Calibration:
    """The calibration this imgidx ships for ``model``, or `uncalibrated` where none is fitted."""
    try:
        text = resources.files("indexer").joinpath(path_for(model)).read_text(encoding="utf-8")
    except FileNotFoundError:
        return uncalibrated(model)
    return from_json(text)


def index_version(classifier_version: str) -> str:
    """What an index records as its calibration: the classifier's curve and the boxes' (`boxes`), as both
    decide the stored rows' meaning."""
    return f"{classifier_version}+boxes/{boxes().version}"


def check_version(model: str, version: str | None, where: str) -> Calibration:
    """The calibration of an index built with ``model`` and calibration ``version``, or a `CalibrationError`
    saying how to rebuild it."""
    current = for_model(model)
    if version != index_version(current.version):
        raise CalibrationError(
            f"{where} holds scores of calibration {version or 'none'}, but this imgidx reads "
            f"{index_version(current.version)}; "
            f"rebuild it: imgidx index FOLDER --db {where} --reindex"
        )
    return current
