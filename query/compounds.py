"""Words of several classes stored as one: ``person`` (faces, the detector's person, three ImageNet classes),
``dog`` (118 breeds and the detector's dog), ``vehicle`` (67 ImageNet classes and 7 of the detector's).

A query computes such a word's value in a cell from its classes' rows: the detector's best probability and
the classifier's calibrated summed evidence, fused (`indexer.calibration.fuse`). No index orders that value,
so a query of ``person`` computed it for every photo that holds any of its classes (a million photos: 30 s).
The writer therefore stores each compound's value per cell, where it reaches `COMPOUND_FLOOR`, as rows of a
class of its own (`indexer.labels.COMPOUND_BASE` up) in ``cell_labels``, and its best cell in
``image_labels``; a query of the word then reads one range of the class index, as for one class.

A compound is every set of several classes a label resolves to (`query.resolve`): of both kinds, with the
rule its two parts are fused by (`indexer.calibration.term_fusion`), or of the classifier alone (``monkey``,
``fish``: their evidence summed), up to `COMPOUND_MAX_CLASSES` classes (``entity`` and ``object`` hold every
class: not a search worth rows in every cell). The index
records which compounds its rows hold (meta `COMPOUNDS_KEY`: their `Compounds.digest`); a query uses them only
when that is this code's digest, and otherwise computes the word as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping

from indexer.calibration import AS_STORED, MONOTONE_FUSIONS, Calibration, fuse, fusion_for, term_fusion
from indexer.labels import COMPOUND_BASE, COMPOUND_WNID_PREFIX
from query.resolve import Resolution, lexicon

#: The lowest confidence a compound's row is stored at; a query asking less computes the word as before.
COMPOUND_FLOOR = 0.1
#: Sets of more classes than this are left to the query (``whole``, ``object``, ``entity``: 1020-1080
#: classes, a row in nearly every cell); ``artifact`` (578) and ``animal`` (408) are stored.
COMPOUND_MAX_CLASSES = 600
#: The meta key naming the compounds an index's rows hold.
COMPOUNDS_KEY = "compounds"
#: Bumped when what a compound's rows mean changes, so older rows are derived again.
COMPOUNDS_FORMAT = 2


@dataclass(frozen=True)
class Compound:
    """One compound: its class id, its classes, the rule its two parts fuse by, and the names it goes by."""

    class_id: int
    classes: frozenset[int]
    rule: str | None  # None for classes of the classifier alone, which are summed, not fused
    names: tuple[str, ...]

    @property
    def wnid(self) -> str:
        return f"{COMPOUND_WNID_PREFIX}{self.class_id - COMPOUND_BASE}"


@dataclass(frozen=True)
class Compounds:
    """The compounds of an index built with or without the object detector (its fusion rule), and the
    calibration their values are computed with."""

    items: tuple[Compound, ...]
    digest: str

    def __post_init__(self) -> None:
        by_key = {(c.classes, c.rule): c.class_id for c in self.items}
        of_class: dict[int, list[Compound]] = {}
        for compound in self.items:
            for c in compound.classes:
                of_class.setdefault(c, []).append(compound)
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_rules", {c.class_id: c.rule for c in self.items})
        object.__setattr__(self, "_model_classes", {c.class_id: tuple(sorted(c.classes - AS_STORED)) for c in self.items})
        object.__setattr__(self, "_scale_cache", {})
        object.__setattr__(self, "_of_class", {c: tuple(v) for c, v in of_class.items()})

    def class_of(self, classes: Iterable[int], rule: str) -> int | None:
        """The class id that stores the word of ``classes`` fused by ``rule`` (classes of the classifier alone:
        summed, whatever the rule); None if none does."""
        classes = frozenset(classes)
        return self._by_key.get((classes, rule if classes & AS_STORED else None))

    def derive(self, cell_labels: Iterable[tuple[int, int, float]], calibration: Calibration,
               ) -> tuple[list[tuple[int, float]], list[tuple[int, int, float]]]:
        """A photo's compound rows from its label rows ``(cell, class_id, score)``: each compound's confidence
        per cell where it reaches `COMPOUND_FLOOR`, as ``(cell, class_id, confidence)``, and its best cell's as
        ``(class_id, confidence)``. The value is the query's (`_value`; tests hold the two to each other): the
        best detector probability and the calibrated summed evidence, fused; each row is added to the
        compounds of its class, rather than each compound reading every row (8 times faster)."""
        scales = self._scales(calibration)
        by_cell: dict[int, list[tuple[int, float]]] = {}
        for cell, class_id, score in cell_labels:
            by_cell.setdefault(cell, []).append((class_id, score))
        cells, best = [], {}
        for cell, rows in sorted(by_cell.items()):
            detector: dict[int, float] = {}
            summed: dict[int, float] = {}
            for class_id, score in rows:
                stored = class_id in AS_STORED
                for compound in self._of_class.get(class_id, ()):
                    key = compound.class_id
                    if stored:
                        detector[key] = max(detector.get(key, 0.0), score)
                    else:
                        summed[key] = summed.get(key, 0.0) + score
            for key in sorted(detector.keys() | summed.keys()):
                value = self._value(key, detector.get(key), summed.get(key), calibration, scales[key])
                if value > best.get(key, -1.0):
                    best[key] = value
                if value >= COMPOUND_FLOOR:
                    cells.append((cell, key, value))
        images = [(class_id, value) for class_id, value in sorted(best.items()) if value >= COMPOUND_FLOOR]
        return images, cells

    def _value(self, key: int, detector: float | None, summed: float | None, calibration: Calibration,
               scale: float) -> float:
        """A compound's confidence in a cell as the query computes it (`query.compile._Compiler.cell_value`):
        under a rule of `MONOTONE_FUSIONS` in evidence space, a detector probability read as the evidence of
        that confidence (the curve's ends bound it, as there), and calibrated once; else on confidences."""
        rule = self._rules[key]
        if rule is None:
            return calibration.curve(summed * scale)
        if rule not in MONOTONE_FUSIONS:
            classifier = calibration.curve(summed * scale) if summed is not None else 0.0
            return fuse(detector if detector is not None else 0.0, classifier, rule)
        as_evidence = 0.0
        if detector is not None:
            classes = self._model_classes[key]
            as_evidence = (calibration.evidence_for(detector, classes) if detector <= calibration.knots[-1][1]
                           else calibration.knots[-1][0] * (1.0 / calibration.scale(classes)))
        return calibration.curve(fuse(as_evidence, summed if summed is not None else 0.0, rule) * scale)

    def _scales(self, calibration: Calibration) -> dict[int, float]:
        """Each compound's `Calibration.scale` of its model classes (in the query's order: sorted)."""
        key = calibration.version
        if key not in self._scale_cache:
            self._scale_cache[key] = {
                key: calibration.scale(classes) for key, classes in self._model_classes.items()}
        return self._scale_cache[key]

    def class_rows(self) -> list[dict]:
        """The ``classes`` rows of the compounds, which their label rows refer to."""
        return [{"class_id": c.class_id, "wnid": c.wnid, "name": c.names[0], "names": ", ".join(c.names)}
                for c in self.items]


@lru_cache(maxsize=None)
def compounds(objects: bool, calibration_version: str) -> Compounds:
    """The compounds of an index built with (``objects``) or without the object detector, whose scores are of
    calibration ``calibration_version``: every label of both kinds the lexicon knows, by its set of classes."""
    rule = fusion_for(objects)
    lex = lexicon()
    found: dict[tuple[frozenset[int], str], list[str]] = {}
    for name in lex.names:
        senses = lex.exact(name)
        resolution = Resolution(name, name, senses)
        classes = resolution.classes
        if len(classes) < 2 or len(classes) > COMPOUND_MAX_CLASSES:
            continue
        found.setdefault((classes, term_fusion(rule, resolution.grouped) if classes & AS_STORED else None), []).append(name)
    ordered = sorted(found.items(), key=lambda item: (sorted(item[0][0]), item[0][1] or ""))
    items = tuple(Compound(COMPOUND_BASE + number, classes, rule, tuple(names))
                  for number, ((classes, rule), names) in enumerate(ordered))
    described = [[sorted(c.classes), c.rule] for c in items]
    digest = hashlib.sha256(json.dumps([COMPOUNDS_FORMAT, COMPOUND_FLOOR, calibration_version, described]).encode())
    return Compounds(items, digest.hexdigest()[:32])


def stored(meta: Mapping[str, str], objects: bool, calibration_version: str) -> Compounds | None:
    """The compounds an index's rows hold (its ``meta``), if they are this code's; None otherwise."""
    current = compounds(objects, calibration_version)
    return current if meta.get(COMPOUNDS_KEY) == current.digest else None
