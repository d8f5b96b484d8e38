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

One calibration belongs to one model and one kind of evidence; its ``version`` is recorded in the index,
and an index is only read with the calibration it was built with. It is fitted at the default working size
(``working_size``); an index built at another ``--size`` reads its evidence through the same curve, which
then holds only roughly. A model with no fitted calibration
(VGG-16 until its real weights are at hand to fit one) reads its evidence as it is (`uncalibrated`).
Pure Python: the query path reads it without numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable

from indexer.errors import ImgidxError
from indexer.labels import FACE_CLASS, NUM_CLASSES

#: Knots are kept strictly increasing in ``P`` by at least this much, so `evidence_for` is exact.
MIN_RISE = 1e-6
#: Labels whose stored scores are probabilities already (faces: the detector's confidence, `indexer.faces`),
#: read as they are. A label that has such classes and others too is read as the better of its two parts
#: (`query.compile`); the curve here sees only the classes of the model.
AS_STORED = frozenset({FACE_CLASS})


def as_stored(classes: Iterable[int]) -> bool:
    """Every one of ``classes`` is read as stored (`AS_STORED`)."""
    classes = set(classes)
    return bool(classes) and classes <= AS_STORED


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
                return p0 + (u - u0) * (p1 - p0) / (u1 - u0)
        return knots[-1][1]

    def probability(self, evidence: float, classes: Iterable[int]) -> float:
        """The confidence of a label with ``evidence`` over ``classes`` (one cell, or a photo's best cell)."""
        classes = tuple(classes)
        if as_stored(classes):
            return min(1.0, evidence)
        return self.curve(evidence * self.scale(classes))

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
            if probability <= p1:
                return (u0 + (probability - p0) * (u1 - u0) / (p1 - p0)) / self.scale(classes)
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


def check_version(model: str, version: str | None, where: str) -> Calibration:
    """The calibration of an index built with ``model`` and calibration ``version``, or a `CalibrationError`
    saying how to rebuild it."""
    current = for_model(model)
    if version != current.version:
        raise CalibrationError(
            f"{where} holds scores of calibration {version or 'none'}, but this imgidx reads {current.version}; "
            f"rebuild it: imgidx index FOLDER --db {where} --reindex"
        )
    return current
