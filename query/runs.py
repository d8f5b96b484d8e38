"""An AND of two words answered from the class runs (`indexer.store.runs`) instead of one SQL statement.

Ranked and counted exactly, such a query reads every match: ``animal AND people`` holds 39,785 photos of a
million, and SQLite merging the two words' photo lists from their B-tree indexes, a row at a time, took
60-150 ms before any ranking (bench/RESULTS.md, session 24). Here each word's photos come as a few blobs per
cell: the word of fewer entries is read in full, the other only in the runs that hold its photos, and numpy
keeps the photos where both reach their thresholds, multiplies their confidences (the statement's
arithmetic: `confidences`), leaves out the photos every query leaves out (`query.compile.unlabelled`),
counts them, and ranks them by score and then path, as the statement does. The page's rows (paths, boxes,
each term's cells) then come from the query's own statement restricted to the page's photos, so a match
reads the same either way.

Only a query of that shape, ranked by score with a page of a given size, on an index that keeps runs:
anything else is the statement's (`answerable`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from indexer.calibration import Calibration
from indexer.store import ANYWHERE, RUN_IDS, Tables, read_runs
from indexer.store.schema import chunks
from query.compile import ALL_CELLS, Spec, unlabelled
from query.parser import And, Node, Term

#: How `query.search.explain` names this way of answering.
PLAN = "an AND of two words intersected from the class runs (query.runs)"
#: The page's image ids in the statement of its rows (`query.compile.compile_query`'s ``photos``).
PAGE = sa.bindparam("page_photos", value=[], expanding=True)


@dataclass(frozen=True)
class RunsPlan:
    """What answering a query from the runs takes: the tables, its two terms, their calibration, and the
    page's size."""

    t: Tables
    specs: tuple[Spec, Spec]
    calibration: Calibration
    limit: int


def shaped(tree: Node) -> bool:
    """Two terms joined by AND, neither negated: the shape the runs answer, told from the tree alone."""
    return isinstance(tree, And) and len(tree.children) == 2 and all(isinstance(c, Term) for c in tree.children)


def answerable(specs: list[Spec]) -> bool:
    """Both terms of a `shaped` query are one class each (a word, a compound) and not text."""
    return len(specs) == 2 and all(len(s.classes) == 1 and not s.is_text and not s.fused for s in specs)


def listed(spec: Spec) -> bool:
    """A photo's value of ``spec`` is its photo row: one class read as stored, anywhere. (A model's class
    anywhere is its best cell's: ``image_labels`` holds only a photo's leading classes.)"""
    return spec.confidences and spec.cells == ALL_CELLS


def _cells(spec: Spec) -> tuple[int, ...]:
    return (ANYWHERE,) if listed(spec) else spec.cells


def _held(spec: Spec, found: dict[int, tuple]) -> dict[int, tuple]:
    """``found`` less the entries below the term's threshold (its evidence, or its confidence)."""
    kept = {}
    for cell, (ids, values) in found.items():
        reach = values > spec.evidence if spec.strict else values >= spec.evidence
        kept[cell] = (ids[reach], values[reach])
    return kept


def photo_values(conn: sa.Connection, t: Tables, spec: Spec):
    """(ids ascending, values): the photos where ``spec`` holds and its value there (its best cell's)."""
    import numpy as np

    found = _held(spec, read_runs(conn, t, spec.classes[0], _cells(spec)))
    ids = np.concatenate([ids for ids, _ in found.values()])
    values = np.concatenate([values for _, values in found.values()])
    order = np.lexsort((-values, ids))  # each photo's entries together, its best first
    ids, values = ids[order], values[order]
    first = np.concatenate(([True], ids[1:] != ids[:-1])) if len(ids) else np.empty(0, bool)
    return ids[first], values[first]


def values_in(conn: sa.Connection, t: Tables, spec: Spec, photos):
    """(held, values) of ``spec`` in each of ``photos`` (ids ascending), read from their runs alone."""
    import numpy as np

    held, best = np.zeros(len(photos), bool), np.full(len(photos), -np.inf)
    wanted = np.unique(photos // RUN_IDS).tolist()
    for ids, values in _held(spec, read_runs(conn, t, spec.classes[0], _cells(spec), wanted)).values():
        if len(ids):
            at = np.searchsorted(ids, photos).clip(max=len(ids) - 1)
            hit = ids[at] == photos
            held |= hit
            best = np.where(hit, np.maximum(best, values[at]), best)
    return held, best


def entries(conn: sa.Connection, t: Tables, spec: Spec) -> int:
    """The bytes of ``spec``'s runs in its cells: which term to read in full."""
    runs = t.class_runs
    query = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(runs.c.ids)), 0)).where(
        runs.c.class_id == spec.classes[0], runs.c.cell.in_(_cells(spec)))
    return conn.execute(query).scalar_one()


def confidences(calibration: Calibration, spec: Spec, values):
    """`query.compile._Compiler.confidence` of ``values``, in the same arithmetic, so ties stay ties: the
    calibration's piecewise-linear curve over the scaled evidence (`Calibration.curve`), or the values as
    they are for a term of confidences."""
    import numpy as np

    if spec.confidences:
        return values
    knots = calibration.knots
    u = values * calibration.scale(spec.model_classes)
    segment = np.searchsorted(np.array([k[0] for k in knots]), u, side="left")  # the first knot at or above u
    result = np.where(segment == 0, knots[0][1], knots[-1][1]).astype(np.float64)
    for at in np.unique(segment[(segment > 0) & (segment < len(knots))]):
        (u0, p0), (u1, p1) = knots[at - 1], knots[at]
        where = segment == at
        result[where] = p0 + (u[where] - u0) * ((p1 - p0) / (u1 - u0))
    return result


#: Matches up to this many are each looked up in ``images`` for whether a query leaves them out; past it, every
#: photo left out is read (thousands in a big index: 4,960 failed files among the synthetic million).
LOOKED_UP = 1000


def _left_out(conn: sa.Connection, t: Tables, ids):
    """Those of ``ids`` that every query leaves out (`query.compile.unlabelled`), or more of them."""
    import numpy as np

    images = t.images
    if len(ids) > LOOKED_UP:
        return np.array(conn.execute(sa.select(images.c.image_id).where(unlabelled(images))).scalars().all(), np.int64)
    found = []
    for chunk in chunks(ids.tolist()):
        found += conn.execute(sa.select(images.c.image_id).where(images.c.image_id.in_(chunk), unlabelled(images))
                              ).scalars().all()
    return np.array(found, np.int64)


def ranked(conn: sa.Connection, plan: RunsPlan, offset: int) -> tuple[list[int], int]:
    """The page's photos (``plan.limit`` from ``offset``), best first, and the count of every match."""
    import numpy as np

    t = plan.t
    first, second = plan.specs
    lead, other = (first, second) if entries(conn, t, first) <= entries(conn, t, second) else (second, first)
    ids, lead_values = photo_values(conn, t, lead)
    held, other_values = values_in(conn, t, other, ids)
    ids, lead_values, other_values = ids[held], lead_values[held], other_values[held]
    values = {lead.number: lead_values, other.number: other_values}
    products = (confidences(plan.calibration, first, values[first.number])
                * confidences(plan.calibration, second, values[second.number]))
    left_out = _left_out(conn, t, ids)
    if len(left_out):
        kept = ~np.isin(ids, left_out)
        ids, products = ids[kept], products[kept]
    total, reach = len(ids), offset + plan.limit
    if total <= offset:
        return [], total
    cut = np.partition(products, total - reach)[total - reach] if total > reach else products.min()
    contenders = products >= cut
    paths = {}
    for chunk in chunks(ids[contenders].tolist()):  # ties at the cut can be many
        paths.update(conn.execute(sa.select(t.images.c.image_id, t.images.c.path)
                                  .where(t.images.c.image_id.in_(chunk))).all())
    order = sorted(zip(products[contenders].tolist(), ids[contenders].tolist()),
                   key=lambda pair: (-pair[0], paths[pair[1]].encode()))
    return [image_id for _, image_id in order[offset:reach]], total
