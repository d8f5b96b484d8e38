"""An AND or a relation of two words answered from the class runs (`indexer.store.runs`) instead of one SQL
statement.

Ranked and counted exactly, such a query reads every match: ``animal AND people`` holds 39,785 photos of a
million, and SQLite merging the two words' photo lists from their B-tree indexes, a row at a time, took
60-150 ms before any ranking (bench/RESULTS.md, session 24); a relation of two ImageNet classes
(``pomegranate right of French horn``) merged their cells so for 75-80 ms. Here each word's photos come as a
few blobs per cell. The word of fewer bytes is read in full into arrays indexed by image id: the cells
where it holds (a mask) and its best value. The other is read only in the runs that hold those photos, and
only its entries in those photos are kept. numpy then keeps the photos where both hold (for a relation:
where some pair of their cells is so placed, `query.compile.RELATION_MASKS`), multiplies their confidences
(the statement's arithmetic: `confidences`), leaves out the photos every query leaves out
(`query.compile.unlabelled`), counts them, and ranks them by score and then path, as the statement does. The
page's rows (paths, boxes, each term's cells) then come from the query's own statement restricted to the
page's photos, so a match reads the same either way.

Only a query of that shape, ranked by score with a page of a given size, on an index that keeps runs:
anything else is the statement's (`answerable`).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import sqlalchemy as sa

from indexer.calibration import Calibration
from indexer.store import ANYWHERE, RUN_IDS, Tables, read_runs
from indexer.store.schema import chunks
from query.compile import ALL_CELLS, RELATION_MASKS, Spec, unlabelled
from query.parser import And, Node, Relation, Term

#: The page's image ids in the statement of its rows (`query.compile.compile_query`'s ``photos``).
PAGE = sa.bindparam("page_photos", value=[], expanding=True)
#: A photo's mask bit for its photo row (`ANYWHERE`), after the nine cells' bits: an AND asks only that a
#: term holds somewhere.
ANYWHERE_BIT = 1 << len(ALL_CELLS)


@dataclass(frozen=True)
class RunsPlan:
    """What answering a query from the runs takes: the tables, its two terms (a relation's left side first),
    their calibration, the page's size, and the relation (None: an AND)."""

    t: Tables
    specs: tuple[Spec, Spec]
    calibration: Calibration
    limit: int
    relation: str | None = None

    @property
    def described(self) -> str:
        """How `query.search.explain` names this way of answering."""
        if self.relation is None:
            return "an AND of two words intersected from the class runs (query.runs)"
        return f"'{self.relation}' of two words tested from the class runs (query.runs)"


def shaped(tree: Node) -> bool:
    """Two terms joined by AND, neither negated, or by a relation: the shapes the runs answer, told from the
    tree alone."""
    return isinstance(tree, Relation) or (
        isinstance(tree, And) and len(tree.children) == 2 and all(isinstance(c, Term) for c in tree.children))


def answerable(specs: list[Spec]) -> bool:
    """Both terms of a `shaped` query are one class each (a word, a compound), not text, and not the same
    term (``dog left of dog`` is one spec)."""
    return len(specs) == 2 and all(len(s.classes) == 1 and not s.is_text and not s.fused for s in specs)


def plan_for(t: Tables, tree: Node, specs: list[Spec], calibration: Calibration, limit: int) -> RunsPlan:
    """The plan of a `shaped` query whose ``specs`` are `answerable` (numbered as met: a relation's left first)."""
    return RunsPlan(t, (specs[0], specs[1]), calibration, limit, tree.kind if isinstance(tree, Relation) else None)


def listed(spec: Spec) -> bool:
    """A photo's value of ``spec`` is its photo row: one class read as stored, anywhere. (A model's class
    anywhere is its best cell's: ``image_labels`` holds only a photo's leading classes.)"""
    return spec.confidences and spec.cells == ALL_CELLS


def _cells(spec: Spec, relation: str | None) -> tuple[int, ...]:
    """Where ``spec``'s runs are read: its photo rows where an AND can take them, else its cells (a relation
    needs them)."""
    return (ANYWHERE,) if relation is None and listed(spec) else spec.cells


@functools.cache
def relation_reach(relation: str):
    """For each mask of cells of a relation's right side, the cells its left side may hold for the relation to
    hold (`query.compile.RELATION_MASKS` over the mask's cells), so each photo is tested with one lookup."""
    import numpy as np

    masks = RELATION_MASKS[relation]
    return np.array([functools.reduce(int.__or__, (masks[b] for b in ALL_CELLS if right >> b & 1), 0)
                     for right in range(1 << len(ALL_CELLS))], np.int16)


def _held(spec: Spec, found: dict[int, tuple], size: int, among=None):
    """(masks, best): for each image id below ``size``, the cells of ``found`` where ``spec`` reaches its
    threshold as bits, and its best value among them (-inf where none); with ``among`` (a mask per image id),
    only in the photos it marks."""
    import numpy as np

    masks, best = np.zeros(size, np.int16), np.full(size, -np.inf)
    for cell, (ids, values) in found.items():
        below = np.searchsorted(ids, size)
        ids, values = ids[:below], values[:below]
        if among is not None:  # positions taken, not a boolean mask applied: twice as fast
            at = np.flatnonzero(among[ids])
            ids, values = ids[at], values[at]
        at = np.flatnonzero(values > spec.evidence if spec.strict else values >= spec.evidence)
        ids, values = ids[at], values[at]
        masks[ids] |= 1 << cell if cell != ANYWHERE else ANYWHERE_BIT
        best[ids] = np.maximum(best[ids], values)
    return masks, best


#: `entries` weighs a term by one run in this many: which term to read in full is a matter of time only, and
#: weighing every run read a row a run (5 ms of a relation of ``person`` at a million photos).
SAMPLED_RUNS = 8


def entries(conn: sa.Connection, t: Tables, spec: Spec, relation: str | None = None) -> int:
    """The bytes of a sample of ``spec``'s runs where they are read: which term to read in full."""
    runs = t.class_runs
    query = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(runs.c.ids)), 0)).where(
        runs.c.class_id == spec.classes[0], runs.c.cell.in_(_cells(spec, relation)), runs.c.run % SAMPLED_RUNS == 0)
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


def _matches(conn: sa.Connection, plan: RunsPlan):
    """(ids ascending, products): every photo where the query holds, with its score, photos left out or not."""
    import numpy as np

    t, relation = plan.t, plan.relation
    first, second = plan.specs
    lead, other = ((first, second) if entries(conn, t, first, relation) <= entries(conn, t, second, relation)
                   else (second, first))
    found = read_runs(conn, lead.classes[0], _cells(lead, relation))
    size = 1 + max((int(ids[-1]) for ids, _ in found.values() if len(ids)), default=-1)
    lead_masks, lead_best = _held(lead, found, size)
    ids = np.flatnonzero(lead_masks)
    runs = ids // RUN_IDS
    wanted = runs[np.flatnonzero(np.diff(runs, prepend=-1))].tolist()  # ids ascending: each run where it starts
    if 2 * len(wanted) > size // RUN_IDS:  # most of them: one range read beats a seek a run
        wanted = None
    other_masks, other_best = _held(other, read_runs(conn, other.classes[0], _cells(other, relation), wanted),
                                    size, among=lead_masks)
    masks = {lead.number: lead_masks[ids], other.number: other_masks[ids]}
    if relation is None:
        holds = masks[other.number] != 0
    else:
        holds = (masks[first.number] & relation_reach(relation)[masks[second.number]]) != 0
    ids = ids[holds]
    best = {lead.number: lead_best[ids], other.number: other_best[ids]}
    return ids, (confidences(plan.calibration, first, best[first.number])
                 * confidences(plan.calibration, second, best[second.number]))


@contextmanager
def one_snapshot(conn: sa.Connection) -> Iterator[None]:
    """The runs' reads and the page's statement in one read transaction. Each is a statement of its own, and
    SQLite's driver opens no transaction for reads, so a writer committing between them (`imgidx index`
    beside `imgidx serve`) would show in some reads and not in others; the statement, one read, needs none."""
    if conn.connection.dbapi_connection.in_transaction:  # the caller's own transaction holds one already
        yield
        return
    conn.exec_driver_sql("BEGIN")
    try:
        yield
    finally:
        conn.exec_driver_sql("COMMIT")


#: glibc keeps up to this much freed memory in the process (`_keep_freed_memory`) ...
KEPT_FREED = 256 << 20
#: ... and serves blocks below this size from it (glibc's largest such bound on 64-bit machines).
MAPPED_FROM = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's malloc.h)


@functools.cache
def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for the next query. By default it hands the top of its heap back to the
    system once 128 KB are free and maps each large block afresh, so every query touched its tens of MB of
    arrays as new pages again: 20-30 ms of the 100-115 of a relation of ``person`` at a million photos
    (bench/RESULTS.md, session 27). Elsewhere than glibc nothing is asked."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_TRIM_THRESHOLD, KEPT_FREED)
    libc.mallopt(_M_MMAP_THRESHOLD, MAPPED_FROM)


def ranked(conn: sa.Connection, plan: RunsPlan, offset: int) -> tuple[list[int], int]:
    """The page's photos (``plan.limit`` from ``offset``), best first, and the count of every match."""
    import numpy as np

    _keep_freed_memory()
    t = plan.t
    ids, products = _matches(conn, plan)
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
