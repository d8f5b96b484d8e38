"""Real indexes (SQLite or PostgreSQL) for the query tests, filled row by row through SQLAlchemy, and a
reference evaluator that answers a query tree by brute force in Python (the oracle for the compiled SQL)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Mapping, Sequence

import sqlalchemy as sa

from indexer.store import open_index, record_runs, tables
from query import DEFAULT_MIN_SCORE
from query.compile import RELATION_MASKS
from query.parser import And, Node, Not, Or, Relation, Term
from query.resolve import Resolution

# class ids used across the tests
SCHOOL_BUS, FLOWERPOT, TABBY, TIGER_CAT, EGYPTIAN_CAT = 779, 738, 281, 282, 285
GOLDEN_RETRIEVER, LABRADOR, BEAGLE, CHIHUAHUA = 207, 208, 162, 151
CRANE_BIRD, CRANE_MACHINE = 134, 517

#: one image: cell -> {class_id: score}
Cells = Mapping[int, Mapping[int, float]]


def make_index(db: Path | str, images: Mapping[str, Cells | None], copies: Mapping[str, str] = {}) -> sa.Engine:
    """An index at ``db`` (a path or URL) holding ``images`` (path -> cells; None = a file that failed to index);
    a path in ``copies`` gets the content hash of the path it maps to (an identical file)."""
    engine = open_index(str(db), create=True)
    t = tables(engine)
    ids = {name: image_id for image_id, name in enumerate(images, start=1)}
    with engine.begin() as conn:
        for image_id, (name, cells) in enumerate(images.items(), start=1):
            conn.execute(
                t.images.insert(),
                {
                    "image_id": image_id,
                    "path": name,
                    "size_bytes": 1000,
                    "mtime_ns": 0,
                    "content_hash": None if cells is None else f"{ids[copies.get(name, name)]:064x}",
                    "width": None if cells is None else 640,
                    "height": None if cells is None else 480,
                    "model": "vgg16",
                    "working_size": 448,
                    "indexed_at": "2025-01-01T00:00:00Z",
                    "error": "cannot identify image file" if cells is None else None,
                },
            )
            rows = [
                {"image_id": image_id, "cell": cell, "class_id": cls, "score": score, "coverage": 0.0}
                for cell, scores in (cells or {}).items()
                for cls, score in scores.items()
            ]
            if rows:
                conn.execute(t.cell_labels.insert(), rows)
                best: dict[int, float] = {}
                for row in rows:  # as the indexer stores a class's photo row: its best cell
                    best[row["class_id"]] = max(best.get(row["class_id"], 0.0), row["score"])
                conn.execute(t.image_labels.insert(), [
                    {"image_id": image_id, "class_id": cls, "score": score, "share": 0.0} for cls, score in best.items()])
        record_runs(conn, list(ids.values()))  # as the writer keeps them (`indexer.store.runs`)
    return engine


def random_images(seed: int, n: int, chances: Mapping[int, float], scores: Sequence[float]) -> dict[str, Cells | None]:
    """``n`` photos for `make_index`: in each cell each class of ``chances`` with its chance, at a score drawn
    from ``scores``; 3% failed files."""
    rng = random.Random(seed)
    images: dict[str, Cells | None] = {}
    for i in range(n):
        cells = {}
        for cell in range(9):
            chosen = [c for c, chance in chances.items() if rng.random() < chance]
            cells[cell] = {c: rng.choice(scores) for c in chosen}
        images[f"/d/{i:03d}.jpg"] = None if rng.random() < 0.03 else cells
    return images


# ------------------------------------------------------------------------------------------- oracle

def _term(term: Term, res: Resolution, cells: Cells, min_score: float) -> tuple[float | None, int]:
    threshold = min_score if term.threshold is None else term.threshold
    strict = term.strict and term.threshold is not None
    best, mask = None, 0
    for cell in term.region.cells:
        total = sum(score for cls, score in cells.get(cell, {}).items() if cls in res.classes)
        if (total > threshold) if strict else (total >= threshold):
            best = total if best is None else max(best, total)
            mask |= 1 << cell
    return best, mask


def holds(node: Node, found: dict[Term, Resolution], cells: Cells, min_score: float = DEFAULT_MIN_SCORE) -> bool:
    if isinstance(node, Term):
        return _term(node, found[node], cells, min_score)[0] is not None
    if isinstance(node, Relation):
        (sa_, ma), (sb, mb) = (_term(t, found[t], cells, min_score) for t in (node.left, node.right))
        table = RELATION_MASKS[node.kind]
        reach = 0
        for b in range(9):
            if mb >> b & 1:
                reach |= table[b]
        return sa_ is not None and sb is not None and bool(ma & reach)
    if isinstance(node, Not):
        return not holds(node.child, found, cells, min_score)
    parts = [holds(child, found, cells, min_score) for child in node.children]
    return all(parts) if isinstance(node, And) else any(parts)


def score(node: Node, found: dict[Term, Resolution], cells: Cells, min_score: float = DEFAULT_MIN_SCORE) -> float:
    """The documented ranking: product over AND and relations, best holding branch for OR, 1 for NOT."""
    if isinstance(node, Term):
        return _term(node, found[node], cells, min_score)[0] or 0.0
    if isinstance(node, Relation):
        return score(node.left, found, cells, min_score) * score(node.right, found, cells, min_score)
    if isinstance(node, Not):
        return 1.0
    if isinstance(node, And):
        product = 1.0
        for child in node.children:
            if not isinstance(child, Not):
                product *= score(child, found, cells, min_score)
        return product
    return max(
        (score(c, found, cells, min_score) if holds(c, found, cells, min_score) else 0.0) for c in node.children
    )


def cells_where(term: Term, res: Resolution, cells: Cells, min_score: float = DEFAULT_MIN_SCORE) -> int:
    return _term(term, res, cells, min_score)[1]
