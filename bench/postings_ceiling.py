"""How fast an AND or a relation of two words could answer from per-class posting lists: a ceiling, not a feature.

    python bench/postings_ceiling.py                       # the 1M synthetic index of bench/query_latency.py
    python bench/postings_ceiling.py --images 100000 --queries "animal AND people"

Issue 24's slowest kind, two typed words joined by AND (``animal AND people``: 39,785 matches at 1M photos),
is ranked and counted exactly, so every match is read: merging the two words' photo lists in image order from
their B-tree indexes alone costs 60-150 ms there, a row of SQLite's at a time (bench/RESULTS.md, session 24).
This measures what the same answer costs when each word's photos are stored as a few blobs of ids and scores
(a class's photos in runs of `CHUNK` image ids, a blob of each per run, as an index could keep them: a batch
of new photos rewrites only the last run of each class it holds) and intersected with numpy.

For each query it writes the blobs of its classes into a file of their own beside the index (the index is
only read), then times, warm, the fastest of ``--repeat`` runs of each: the query as `query.search` runs it
(prepare + execute), and the same page and count from the blobs: read the blobs, keep the photos that reach
each term's threshold (a region's: its best cell among those asked for), intersect, multiply, leave out the
photos the query leaves out (`query.compile.unlabelled`), count, and rank the photos that reach the page's
last product by score and then path, as the statement does. The side of fewer entries is read in full, the
other looked up for its photos; a relation reads each side's cells, and is tested from their masks. It
checks that both give the same page and count (a count that stopped at ``N+`` agrees with any count over N),
and prints the ratio. Last, it prints what keeping the blobs would cost a writer (`write_cost`).

Session 26 built it: the index keeps such runs (`indexer.store.runs`) and an AND of two words is answered from
them (`query.runs`), so the ANDs here now take that path through `query.search` too, and since session 27
the relations as well.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from indexer.store import open_index, tables  # noqa: E402
from query.compile import ALL_CELLS, Spec, unlabelled  # noqa: E402
from query.parser import And, Relation  # noqa: E402
from query.runs import confidences, listed as read_as_photos, relation_reach  # noqa: E402
from query.search import execute, prepare  # noqa: E402

#: Image ids a blob holds: at 1M photos a class has at most 245 of them per cell.
CHUNK = 4096
#: The slow typed ANDs of bench/RESULTS.md (session 24), each term one class read as stored, and slow relations.
QUERIES = ("animal AND people", "person AND vehicle", "vehicle AND face", "animal AND face", "car AND people",
           "people in top row AND animal", "vehicle in left column AND people", "face AND vehicle in left column",
           "dog in bottom-right AND people",
           # relations of the bench's seeds 3 and 7 that took over 100 ms (bench/RESULTS.md, sessions 20-24)
           "person right of bowl", "face right of frisbee", "pomegranate right of French horn",
           "person left of running shoe", "yawl below person", "person below oven", "French horn next to person",
           "pizza right of cup", "person next to cake")
#: The ``cell`` of a class's photo rows (``image_labels``: each photo's best cell).
ANYWHERE = -1
POSTINGS = ("CREATE TABLE IF NOT EXISTS postings (class_id INTEGER, cell INTEGER, chunk INTEGER, ids BLOB, "
            "scores BLOB, PRIMARY KEY (class_id, cell, chunk)) WITHOUT ROWID")


def open_postings(path: Path | str) -> sqlite3.Connection:
    """The file of blobs, made where it is missing."""
    out = sqlite3.connect(path)
    out.execute(POSTINGS)
    return out


def write_postings(index: sqlite3.Connection, out: sqlite3.Connection, class_id: int) -> float:
    """Write ``class_id``'s photo rows and cell rows as blobs, a run of `CHUNK` ids each; seconds taken."""
    start = time.perf_counter()
    if out.execute("SELECT 1 FROM postings WHERE class_id = ? LIMIT 1", (class_id,)).fetchone():
        return 0.0
    reads = [(ANYWHERE, index.execute("SELECT image_id, score FROM image_labels WHERE class_id = ?", (class_id,)))]
    reads += [(cell, index.execute("SELECT image_id, score FROM cell_labels WHERE class_id = ? AND cell = ?",
                                   (class_id, cell))) for cell in ALL_CELLS]
    for cell, rows in reads:
        pairs = np.array(rows.fetchall(), dtype=np.float64).reshape(-1, 2)
        ids, scores = pairs[:, 0].astype(np.int64), pairs[:, 1]
        order = np.argsort(ids, kind="stable")
        ids, scores = ids[order], scores[order]
        chunks = ids // CHUNK
        bounds = np.flatnonzero(np.diff(chunks)) + 1
        for part_ids, part_scores in zip(np.split(ids, bounds), np.split(scores, bounds)):
            if len(part_ids):
                out.execute("INSERT INTO postings VALUES (?, ?, ?, ?, ?)",
                            (class_id, cell, int(part_ids[0] // CHUNK), part_ids.astype(np.int32).tobytes(),
                             part_scores.tobytes()))
    out.commit()
    return time.perf_counter() - start


def blobs(out: sqlite3.Connection, spec: Spec, cells: tuple[int, ...]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(cell, ids ascending, values) of ``spec``'s class in each of ``cells`` (`ANYWHERE`: its photo rows),
    only the rows where it holds."""
    marks = ",".join("?" * len(cells))
    rows = out.execute(f"SELECT cell, ids, scores FROM postings WHERE class_id = ? AND cell IN ({marks}) "
                       "ORDER BY cell, chunk", (spec.classes[0], *cells)).fetchall()
    read = []
    for cell in cells:
        mine = [(i, v) for c, i, v in rows if c == cell]
        ids = np.concatenate([np.frombuffer(i, np.int32) for i, _ in mine]) if mine else np.empty(0, np.int32)
        values = np.concatenate([np.frombuffer(v, np.float64) for _, v in mine]) if mine else np.empty(0)
        kept = values > spec.evidence if spec.strict else values >= spec.evidence
        read.append((cell, ids[kept], values[kept]))
    return read


def listed(spec: Spec, relation: bool) -> bool:
    """A photo's value of ``spec`` is its photo row (`query.runs.listed`), unless a relation needs its cells."""
    return read_as_photos(spec) and not relation


def photo_values(out: sqlite3.Connection, spec: Spec, relation: bool) -> tuple[np.ndarray, ...]:
    """(ids, values, masks), ids ascending: the photos where ``spec`` holds, its value there (its best cell)
    and, for a relation, the mask of the cells where it holds (else None)."""
    if listed(spec, relation):
        (_, ids, values), = blobs(out, spec, (ANYWHERE,))
        return ids, values, None
    read = blobs(out, spec, spec.cells)
    ids = np.concatenate([i for _, i, _ in read])
    values = np.concatenate([v for _, _, v in read])
    cell_of = np.concatenate([np.full(len(i), cell, np.int64) for cell, i, _ in read])
    order = np.lexsort((-values, ids))  # each photo's rows together, its best cell first
    ids, values, cell_of = ids[order], values[order], cell_of[order]
    first = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1]))) if len(ids) else np.empty(0, np.int64)
    masks = np.bitwise_or.reduceat(np.left_shift(1, cell_of), first) if len(ids) else np.empty(0, np.int64)
    return ids[first], values[first], masks


def values_in(out: sqlite3.Connection, spec: Spec, relation: bool, photos: np.ndarray) -> tuple[np.ndarray, ...]:
    """(held, values, masks) of ``spec`` in each of ``photos`` (ids ascending), each looked up in its blobs."""
    held, best = np.zeros(len(photos), bool), np.full(len(photos), -np.inf)
    masks = np.zeros(len(photos), np.int64)
    for cell, ids, values in blobs(out, spec, (ANYWHERE,) if listed(spec, relation) else spec.cells):
        if not len(ids):
            continue
        at = np.searchsorted(ids, photos).clip(max=len(ids) - 1)
        hit = ids[at] == photos
        held |= hit
        best = np.where(hit, np.maximum(best, values[at]), best)
        if cell != ANYWHERE:
            masks |= np.where(hit, 1 << cell, 0)
    return held, best, masks


def blob_bytes(out: sqlite3.Connection, spec: Spec, relation: bool) -> int:
    """The bytes of ``spec``'s blobs that `photo_values` reads."""
    cells = (ANYWHERE,) if listed(spec, relation) else spec.cells
    marks = ",".join("?" * len(cells))
    return out.execute(f"SELECT coalesce(sum(length(ids)), 0) FROM postings WHERE class_id = ? AND cell IN ({marks})",
                       (spec.classes[0], *cells)).fetchone()[0]


def from_postings(index: sqlite3.Connection, out: sqlite3.Connection, prepared, left_out: str,
                  limit: int) -> tuple[list[tuple[int, float]], int]:
    """The page ((image id, score), best first) and the count of ``prepared``'s AND or relation, from the
    blobs."""
    tree, specs, calibration = prepared.tree, prepared.compiled.specs, prepared.compiled.calibration
    relation = isinstance(tree, Relation)
    sides = [specs[0], specs[-1]]
    # the side of fewer rows read in full, the other's looked up for its photos
    lead = 0 if blob_bytes(out, sides[0], relation) <= blob_bytes(out, sides[1], relation) else 1
    ids, lead_values, lead_masks = photo_values(out, sides[lead], relation)
    held, other_values, other_masks = values_in(out, sides[1 - lead], relation, ids)
    values = [lead_values, other_values] if lead == 0 else [other_values, lead_values]
    masks = [lead_masks, other_masks] if lead == 0 else [other_masks, lead_masks]
    if relation:
        held &= (masks[0] & relation_reach(tree.kind)[masks[1]]) != 0
    ids = ids[held]
    products = confidences(calibration, sides[0], values[0][held]) * confidences(calibration, sides[1], values[1][held])
    excluded = np.fromiter((i for (i,) in index.execute(left_out)), np.int64)
    if len(excluded):
        kept = ~np.isin(ids, excluded)
        ids, products = ids[kept], products[kept]
    total = len(ids)
    if total == 0:
        return [], 0
    kth = np.partition(products, total - limit)[total - limit] if total > limit else products.min()
    reach = products >= kth
    reaching = ",".join(str(int(i)) for i in ids[reach])
    paths = dict(index.execute(f"SELECT image_id, path FROM images WHERE image_id IN ({reaching})"))
    ranked = sorted(zip(products[reach].tolist(), ids[reach].tolist()),
                    key=lambda pair: (-pair[0], paths[pair[1]].encode()))
    return [(image_id, score) for score, image_id in ranked[:limit]], total


def write_cost(index: sqlite3.Connection, batch: int, batches: int) -> tuple[float, float, int]:
    """What keeping the blobs costs a writer: the runs of the index's last two `CHUNK`s of photos are built
    from their rows in a database in memory, less their last ``batch`` * ``batches`` photos, which are then
    added back a batch at a time as the indexer adds photos: each (class, cell) a batch holds has its run
    read, extended and written, in one transaction a batch; only that is timed. (ms per photo, KB written
    per photo, runs written per photo)."""
    last = index.execute("SELECT max(image_id) FROM images").fetchone()[0]
    first = (last // CHUNK - 1) * CHUNK
    rows = index.execute("SELECT image_id, class_id, cell, score FROM cell_labels WHERE image_id >= ? "
                         "UNION ALL SELECT image_id, class_id, -1, score FROM image_labels WHERE image_id >= ?",
                         (first, first)).fetchall()
    added_from = last - batch * batches + 1
    runs: dict[tuple[int, int, int], list[tuple[int, float]]] = {}
    for image_id, class_id, cell, score in rows:
        if image_id < added_from:
            runs.setdefault((class_id, cell, image_id // CHUNK), []).append((image_id, score))
    mem = open_postings(":memory:")
    for (class_id, cell, chunk), pairs in runs.items():
        pairs.sort()
        mem.execute("INSERT INTO postings VALUES (?, ?, ?, ?, ?)",
                    (class_id, cell, chunk, np.array([i for i, _ in pairs], np.int32).tobytes(),
                     np.array([s for _, s in pairs], np.float64).tobytes()))
    mem.commit()
    batches_rows: dict[int, dict[tuple[int, int, int], list[tuple[int, float]]]] = {}
    for image_id, class_id, cell, score in sorted(row for row in rows if row[0] >= added_from):
        grouped = batches_rows.setdefault((image_id - added_from) // batch, {})
        grouped.setdefault((class_id, cell, image_id // CHUNK), []).append((image_id, score))
    written, touched, start = 0, 0, time.perf_counter()
    for grouped in batches_rows.values():
        with mem:
            for key, pairs in grouped.items():
                row = mem.execute("SELECT ids, scores FROM postings WHERE class_id = ? AND cell = ? AND chunk = ?",
                                  key).fetchone()
                ids = np.array([i for i, _ in pairs], np.int32)
                scores = np.array([s for _, s in pairs], np.float64)
                if row:
                    ids = np.concatenate((np.frombuffer(row[0], np.int32), ids))
                    scores = np.concatenate((np.frombuffer(row[1], np.float64), scores))
                mem.execute("INSERT OR REPLACE INTO postings VALUES (?, ?, ?, ?, ?)",
                            (*key, ids.tobytes(), scores.tobytes()))
                written += ids.nbytes + scores.nbytes
                touched += 1
    photos = batch * batches
    return (time.perf_counter() - start) * 1000 / photos, written / 1024 / photos, touched // photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000, help="the synthetic index of bench/query_latency.py")
    parser.add_argument("--queries", nargs="*", default=QUERIES, help="none: only the write cost")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="photos a writer's transaction adds (write cost)")
    args = parser.parse_args()
    db = HERE / "out" / f"synthetic-{args.images}.db"
    engine = open_index(str(db), create=False, readonly=True)
    t = tables(engine)
    left_out = str(sa.select(t.images.c.image_id).where(unlabelled(t.images))
                   .compile(engine, compile_kwargs={"literal_binds": True}))
    index = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = open_postings(HERE / "out" / f"postings-{args.images}.db")
    print(f"index: {db.name}; blobs of {CHUNK:,} ids; fastest of {args.repeat} warm runs, ms")
    print(f"{'query':40} {'matches':>9} {'search':>8} {'blobs':>8} {'ratio':>6}  same")
    for text in args.queries:
        prepared = prepare(engine, text, tables=t)
        specs = prepared.compiled.specs
        pair = isinstance(prepared.tree, Relation) or (isinstance(prepared.tree, And) and len(specs) == 2)
        if not pair or any(len(spec.classes) != 1 for spec in specs):
            print(f"{text:40} not an AND or a relation of two terms of one class each")
            continue
        built = sum(write_postings(index, out, spec.classes[0]) for spec in specs)
        searched, read = [], []
        for _ in range(args.repeat + 1):
            start = time.perf_counter()
            result = execute(engine, prepare(engine, text, tables=t))
            searched.append(time.perf_counter() - start)
            start = time.perf_counter()
            page, total = from_postings(index, out, prepared, left_out, 20)
            read.append(time.perf_counter() - start)
        theirs = [(m.image_id, m.score) for m in result.matches]
        count_agrees = total == result.total if result.counted else total > result.total
        same = "yes" if page == theirs and count_agrees else f"NO: {total} against {result.total}"
        fastest = min(searched[1:]) * 1000, min(read[1:]) * 1000
        print(f"{text:40} {total:9,} {fastest[0]:8.1f} {fastest[1]:8.1f} {fastest[0] / fastest[1]:6.1f}  {same}"
              + (f"  (blobs written in {built:.1f} s)" if built else ""), flush=True)
    per_photo, kb, runs = write_cost(index, args.batch, 64)
    print(f"keeping the blobs: {per_photo:.2f} ms a photo added, {kb:.0f} KB of blobs written a photo "
          f"({runs} runs), {args.batch} photos a transaction (a database in memory: no disk time)")


if __name__ == "__main__":
    main()
