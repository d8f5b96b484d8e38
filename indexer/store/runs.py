"""Each class's photos as runs of image ids and scores (the ``class_runs`` table), kept equal to the label rows
they mirror, so that an AND or a relation of two words reads arrays (`query.runs`) instead of merging two
B-tree ranges a row at a time: at a million photos, 60-150 ms of SQLite's before any ranking
(bench/RESULTS.md, sessions 24-27).

A run holds one class's rows in one cell (`ANYWHERE`: its ``image_labels`` rows) of the image ids from
``run * RUN_IDS`` to the next run's, as two blobs: the ids ascending and their scores, the same doubles the
rows hold. A writer keeps them in the transaction that writes the rows: `forget` before the rows of some
images are deleted, `record` after rows are inserted. Both read the rows themselves, so a writer passes only
image ids. A new photo takes the next id, so indexing new photos rewrites only the last run of each (class,
cell) they hold: about 7 ms a photo more for the writer (bench/write_cost.py --drop class_runs).

Only SQLite indexes keep them (`kept`). PostgreSQL takes several writers at once, and each would rewrite the
same last runs (every batch holds ``person``'s), so the writers would wait on one another there; its queries
read the rows, and its table stays empty.
"""

from __future__ import annotations

import struct
from itertools import groupby
from typing import Iterable

import sqlalchemy as sa

from indexer.labels import COMPOUND_BASE
from indexer.store.schema import Tables, chunks

#: Image ids a run spans: at a million photos a class holds at most ~250 of them per cell in a run
#: (bench/postings_ceiling.py), so a batch of new photos rewrites a few KB per (class, cell).
RUN_IDS = 4096
#: The ``cell`` of a class's runs of ``image_labels`` rows: each photo's best cell, what a word anywhere reads.
ANYWHERE = -1
#: How a blob stores ids and scores, little-endian whatever the machine: ids as 4-byte unsigned integers (an
#: SQLite rowid of a photo passes 4 billion never in practice; `record` refuses it), scores as the rows' doubles.
IDS_TYPE, SCORES_TYPE = "<u4", "<f8"
MAX_ID = 2**32 - 1


def kept(conn: sa.Connection) -> bool:
    """The index keeps runs: SQLite's (see the module's docstring)."""
    return conn.dialect.name == "sqlite"


def _rows(conn: sa.Connection, image_ids: list[int], compounds_only: bool) -> dict[tuple, list]:
    """The label rows of ``image_ids``, as ``{(class_id, cell, run): [(image_id, score), ...]}``; through SQLite's
    own cursor, as `_rewrite` writes."""
    grouped: dict[tuple, list] = {}
    lowest_class = COMPOUND_BASE if compounds_only else 0
    cursor = conn.connection.cursor()
    for chunk in chunks(sorted(image_ids)):
        marks = ", ".join("?" * len(chunk))
        rows = cursor.execute(
            f"SELECT class_id, cell, image_id, score FROM cell_labels WHERE image_id IN ({marks}) AND class_id >= ? "
            f"UNION ALL SELECT class_id, {ANYWHERE}, image_id, score FROM image_labels "
            f"WHERE image_id IN ({marks}) AND class_id >= ?", (*chunk, lowest_class, *chunk, lowest_class))
        for class_id, cell, image_id, score in rows:
            grouped.setdefault((class_id, cell, image_id // RUN_IDS), []).append((image_id, score))
    cursor.close()
    return grouped


def _rewrite(conn: sa.Connection, changes: dict[tuple, list], image_ids: list[int]) -> None:
    """Each run of ``changes`` read, less the entries of ``image_ids``, plus its listed entries, and written back
    (or deleted where none is left). New photos come after every photo of their runs, so their entries are
    appended to the blobs as bytes; numpy takes a run only where a touched id falls inside it (a photo redone).
    Through SQLite's own cursor: a batch of 8 photos rewrites some 1,500 runs, and SQLAlchemy's statements cost
    more than the work (bench/write_cost.py --drop class_runs)."""
    import numpy as np

    touched = np.unique(np.asarray(image_ids, dtype=np.int64))
    lowest = int(touched[0])
    cursor = conn.connection.cursor()
    written, emptied = [], []
    for key, entries in changes.items():
        held = cursor.execute("SELECT ids, scores FROM class_runs WHERE class_id = ? AND cell = ? AND run = ?",
                              key).fetchone()
        entries.sort()
        ids, scores = held if held else (b"", b"")
        added_ids = struct.pack(f"<{len(entries)}I", *(i for i, _ in entries))
        added_scores = struct.pack(f"<{len(entries)}d", *(s for _, s in entries))
        if ids and struct.unpack_from("<I", ids, len(ids) - 4)[0] < lowest:
            ids, scores = ids + added_ids, scores + added_scores  # every touched id comes after the run's
        elif ids:
            old_ids, old_scores = np.frombuffer(ids, IDS_TYPE), np.frombuffer(scores, SCORES_TYPE)
            remaining = ~np.isin(old_ids, touched)
            all_ids = np.concatenate((old_ids[remaining], np.frombuffer(added_ids, IDS_TYPE)))
            all_scores = np.concatenate((old_scores[remaining], np.frombuffer(added_scores, SCORES_TYPE)))
            order = np.argsort(all_ids, kind="stable")
            ids, scores = all_ids[order].tobytes(), all_scores[order].tobytes()
        else:
            ids, scores = added_ids, added_scores
        if ids:
            written.append((*key, ids, scores))
        elif held:
            emptied.append(key)
    if emptied:
        cursor.executemany("DELETE FROM class_runs WHERE class_id = ? AND cell = ? AND run = ?", emptied)
    if written:
        cursor.executemany("INSERT OR REPLACE INTO class_runs (class_id, cell, run, ids, scores) "
                           "VALUES (?, ?, ?, ?, ?)", written)
    cursor.close()


def forget(conn: sa.Connection, image_ids: list[int], compounds_only: bool = False) -> None:
    """Take ``image_ids`` out of the runs, before their label rows (only the compounds': ``compounds_only``) go."""
    if image_ids and kept(conn):
        _rewrite(conn, {key: [] for key in _rows(conn, image_ids, compounds_only)}, image_ids)


def _check_ids(highest: int) -> None:
    if highest > MAX_ID:
        from indexer.errors import StoreError

        raise StoreError(f"image id {highest} is past what the index's runs hold ({MAX_ID})")


def record(conn: sa.Connection, image_ids: list[int], compounds_only: bool = False) -> None:
    """Put the label rows of ``image_ids`` (only the compounds': ``compounds_only``), inserted just now, into
    the runs."""
    if not image_ids or not kept(conn):
        return
    _check_ids(max(image_ids))
    _rewrite(conn, _rows(conn, image_ids, compounds_only), image_ids)


def rebuild(conn: sa.Connection, t: Tables) -> None:
    """Every run made again from the rows (an upgrade, or after the rows changed wholesale)."""
    conn.execute(t.class_runs.delete())
    if not kept(conn):
        return
    import numpy as np

    cursor = conn.connection.cursor()  # SQLite's own: a million photos' rows are hundreds of millions
    classes = [class_id for (class_id,) in cursor.execute(
        "SELECT class_id FROM cell_labels GROUP BY class_id UNION SELECT class_id FROM image_labels GROUP BY class_id")]
    for class_id in classes:
        rows = cursor.execute("SELECT cell, image_id, score FROM cell_labels WHERE class_id = ? UNION ALL "
                              f"SELECT {ANYWHERE}, image_id, score FROM image_labels WHERE class_id = ?",
                              (class_id, class_id)).fetchall()
        rows = np.array(rows, dtype=np.float64).reshape(-1, 3)
        cell, ids, scores = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2]
        if len(ids):
            _check_ids(int(ids.max()))
        order = np.lexsort((ids, cell))
        cell, ids, scores = cell[order], ids[order], scores[order]
        runs = ids // RUN_IDS
        starts = np.flatnonzero(np.concatenate(([True], (cell[1:] != cell[:-1]) | (runs[1:] != runs[:-1]))))
        ends = np.append(starts[1:], len(ids))
        cursor.executemany("INSERT INTO class_runs (class_id, cell, run, ids, scores) VALUES (?, ?, ?, ?, ?)", [
            (class_id, int(cell[a]), int(runs[a]), ids[a:b].astype(IDS_TYPE).tobytes(),
             scores[a:b].astype(SCORES_TYPE).tobytes()) for a, b in zip(starts, ends)])
    cursor.close()


def read(conn: sa.Connection, class_id: int, cells: Iterable[int], runs: list[int] | None = None) -> dict[int, tuple]:
    """``{cell: (ids ascending, scores)}`` of ``class_id`` in ``cells`` (`ANYWHERE`: its photo rows), as numpy
    arrays (ids as int64); only the runs listed in ``runs`` where given. Through SQLite's own cursor, each
    cell's blobs joined as bytes: a relation of two ImageNet classes reads 4,400 runs at a million photos, 37 ms
    through SQLAlchemy's rows and an array a run, 27 ms so (session 27)."""
    import numpy as np

    cells = list(cells)
    sql = f"SELECT cell, ids, scores FROM class_runs WHERE class_id = ? AND cell IN ({', '.join('?' * len(cells))})"
    if runs is not None:
        sql += f" AND run IN ({', '.join('?' * len(runs))})"
    cursor = conn.connection.cursor()
    rows = cursor.execute(sql + " ORDER BY cell, run", (class_id, *cells, *(runs or ()))).fetchall()
    cursor.close()
    found = {cell: (np.empty(0, np.int64), np.empty(0)) for cell in cells}
    for cell, blobs in groupby(rows, key=lambda row: row[0]):
        blobs = list(blobs)
        found[cell] = (np.frombuffer(b"".join(row[1] for row in blobs), IDS_TYPE).astype(np.int64),
                       np.frombuffer(b"".join(row[2] for row in blobs), SCORES_TYPE))
    return found
