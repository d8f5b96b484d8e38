"""The write path: what an indexing run and a merge call to store images with their labels and boxes, the
settings, moves and deletions, each inside the caller's transaction. PostgreSQL takes several writers at
once: rows are upserted by path and the settings row is locked, so concurrent runs neither duplicate nor mix
rows, and a transaction PostgreSQL aborts to break a deadlock runs again (`transaction`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from indexer.boxes import Box
from indexer.labels import COMPOUND_BASE
from indexer.names import restored, stored
from indexer.store import runs
from indexer.words import JOINED, joined
from indexer.store.schema import (
    BOX_COLUMNS, DETECTOR_OFF, DETECTOR_ON, TEXT_COLUMNS, WORD_COLUMNS, IndexSettings, Tables, chunks, read_settings,
)

if TYPE_CHECKING:
    from indexer.taken import Taken

T = TypeVar("T")


def read_settings_locked(conn: sa.Connection, t: Tables, exclusive: bool = False) -> IndexSettings | None:
    """The settings, locked until the transaction ends: ``exclusive`` to change them, else shared.

    On PostgreSQL this locks the ``schema_version`` row of ``meta`` (always there, unlike the settings of a
    new index), so a writer that changes the settings waits for every transaction that wrote labels under
    the old ones, and those after it see the new ones. SQLite writers are one at a time anyway.
    """
    meta = t.meta
    lock = sa.select(meta.c.key).where(meta.c.key == "schema_version").with_for_update(read=not exclusive)
    conn.execute(lock).all()
    return read_settings(conn)


def _insert(conn: sa.Connection, table: sa.Table):
    """An INSERT that can say ON CONFLICT: the dialect's own (both have ``on_conflict_do_update``); imported
    here, as only writers need it and PostgreSQL's dialect costs a reader start-up time."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def write_settings(conn: sa.Connection, t: Tables, settings: IndexSettings) -> None:
    """Store ``settings``; an upsert per key, so two writers storing them at once never collide on a key."""
    values = {
        "model": settings.model, "working_size": str(settings.working_size), "precision": settings.precision,
        "calibration": settings.calibration, "faces": DETECTOR_ON if settings.faces else DETECTOR_OFF,
        "objects": DETECTOR_ON if settings.objects else DETECTOR_OFF,
        "text": DETECTOR_ON if settings.text else DETECTOR_OFF,
        "runtime": settings.runtime, "quantization": settings.quantization,
    }
    insert = _insert(conn, t.meta)
    conn.execute(
        insert.on_conflict_do_update(index_elements=[t.meta.c.key], set_={"value": insert.excluded.value}),
        [{"key": k, "value": v} for k, v in values.items()],
    )


def write_meta(conn: sa.Connection, t: Tables, key: str, value: str | None) -> None:
    """Store one ``meta`` value (None: remove it)."""
    conn.execute(t.meta.delete().where(t.meta.c.key == key))
    if value is not None:
        conn.execute(t.meta.insert(), [{"key": key, "value": value}])


def add_classes(conn: sa.Connection, t: Tables, rows: list[dict]) -> None:
    """Store the compounds' ``classes`` rows (ids from `COMPOUND_BASE` up) not stored yet; a row of the same id
    is left as it is."""
    known = set(conn.execute(sa.select(t.classes.c.class_id).where(t.classes.c.class_id >= COMPOUND_BASE)).scalars())
    missing = [row for row in rows if row["class_id"] not in known]
    if missing:
        conn.execute(t.classes.insert(), missing)


def has_labels(conn: sa.Connection, t: Tables) -> bool:
    """Some image has label rows."""
    return conn.execute(sa.select(t.cell_labels.c.image_id).limit(1)).first() is not None


def labelled_ids(conn: sa.Connection, t: Tables) -> list[int]:
    """Every image with label rows, in id order."""
    return list(conn.execute(sa.select(t.image_labels.c.image_id).distinct().order_by(t.image_labels.c.image_id)).scalars())


def model_label_rows(conn: sa.Connection, t: Tables, image_ids: list[int]) -> dict[int, list[tuple[int, int, float]]]:
    """The ``(cell, class_id, score)`` rows of the models (not of compounds) of each of ``image_ids``."""
    cl = t.cell_labels
    rows: dict[int, list[tuple[int, int, float]]] = {image_id: [] for image_id in image_ids}
    for chunk in chunks(image_ids):
        query = (sa.select(cl.c.image_id, cl.c.cell, cl.c.class_id, cl.c.score)
                 .where(cl.c.image_id.in_(chunk), cl.c.class_id < COMPOUND_BASE)
                 .order_by(cl.c.image_id, cl.c.cell, cl.c.class_id))
        for image_id, cell, class_id, score in conn.execute(query):
            rows[image_id].append((cell, class_id, score))
    return rows


def replace_compound_rows(conn: sa.Connection, t: Tables, image_ids: list[int], image_rows: list[dict],
                          cell_rows: list[dict]) -> None:
    """Replace the compound rows (`indexer.labels.COMPOUND_BASE` up) of ``image_ids``."""
    runs.forget(conn, image_ids, compounds_only=True)
    for chunk in chunks(image_ids):
        for table in (t.cell_labels, t.image_labels):
            conn.execute(table.delete().where(table.c.image_id.in_(chunk), table.c.class_id >= COMPOUND_BASE))
    for table, rows in ((t.image_labels, image_rows), (t.cell_labels, cell_rows)):
        if rows:
            conn.execute(table.insert(), rows)
    runs.record(conn, image_ids, compounds_only=True)


#: SQLSTATEs of a transaction PostgreSQL aborted so that others could go on (deadlock detected, could not
#: serialize): running it again is the remedy PostgreSQL documents.
RETRY_SQLSTATES = ("40P01", "40001")
TRANSACTION_ATTEMPTS = 3


def transaction(engine: Engine, work: Callable[[sa.Connection], T]) -> T:
    """``work(conn)`` in one transaction, run again if the database aborted it to break a deadlock
    between concurrent writers (at most `TRANSACTION_ATTEMPTS` times in all)."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except OperationalError as exc:
            if attempt == TRANSACTION_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in RETRY_SQLSTATES:
                raise
    raise AssertionError("unreachable")



@dataclass(frozen=True)
class FileRecord:
    """What the index holds about one path, as the incremental diff needs it."""

    image_id: int
    path: str
    size_bytes: int
    mtime_ns: int
    content_hash: str | None
    model: str | None
    working_size: int | None
    error: str | None
    #: Where its date comes from (`indexer.taken.TAKEN_EXIF`...); None: never read (indexed before dates).
    taken_source: str | None = None

    def is_current(self, settings: IndexSettings) -> bool:
        """Labels are stored, computed with ``settings``."""
        return self.error is None and self.model == settings.model and self.working_size == settings.working_size

    @property
    def undated(self) -> bool:
        """Labelled before the index stored dates (schema version 5): its date is still to be read."""
        return self.error is None and self.taken_source is None


def file_records(conn: sa.Connection, t: Tables) -> list[FileRecord]:
    """Every row, its path as the file system spells it (`indexer.names.restored`)."""
    images = t.images
    columns = [getattr(images.c, f) for f in FileRecord.__dataclass_fields__]
    return [FileRecord(row[0], restored(row[1]), *row[2:]) for row in conn.execute(sa.select(*columns))]


@dataclass(frozen=True)
class FileRow:
    """The ``images`` row for one file: labelled (``error`` None) or failed."""

    path: str
    size_bytes: int
    mtime_ns: int
    content_hash: str | None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    working_size: int | None = None
    error: str | None = None
    #: When the photo was taken, as `indexer.taken.Taken` has it (None for a failed file).
    taken_at: str | None = None
    taken_offset: str | None = None
    taken_source: str | None = None
    camera: str | None = None


def taken_fields(taken: "Taken | None") -> dict:
    """An `indexer.taken.Taken` as the ``images`` columns (and `FileRow` fields) that store it."""
    if taken is None:
        return {"taken_at": None, "taken_offset": None, "taken_source": None, "camera": None}
    return {"taken_at": taken.at, "taken_offset": taken.offset, "taken_source": taken.source, "camera": taken.camera}


def utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")



def _delete_labels(conn: sa.Connection, t: Tables, image_ids: list[int]) -> None:
    runs.forget(conn, image_ids)
    for chunk in chunks(image_ids):
        conn.execute(t.cell_labels.delete().where(t.cell_labels.c.image_id.in_(chunk)))
        conn.execute(t.image_labels.delete().where(t.image_labels.c.image_id.in_(chunk)))
        conn.execute(t.boxes.delete().where(t.boxes.c.image_id.in_(chunk)))
        conn.execute(t.text_words.delete().where(t.text_words.c.image_id.in_(chunk)))
        conn.execute(t.texts.delete().where(t.texts.c.image_id.in_(chunk)))


def upsert_images(
    conn: sa.Connection, t: Tables, rows: list[FileRow], indexed_at: list[str] | None = None
) -> list[int]:
    """Insert or replace the rows by path (their old labels deleted); their image ids, in order.

    Paths are stored as `indexer.names.stored` spells them (a no-op on stored text, as a merge passes).
    ``indexed_at`` (one per row) keeps the times of rows copied from another index; default now. One
    ``INSERT ... ON CONFLICT (path) DO UPDATE ... RETURNING`` per chunk, in path order: writers upserting
    the same paths at once (PostgreSQL) take the rows' locks in one order, so they do not deadlock, and
    the later one replaces the earlier's row instead of adding a second. A path given twice: the last wins.
    """
    if not rows:
        return []
    images = t.images
    times = indexed_at if indexed_at is not None else [utc_now()] * len(rows)
    values = {stored(row.path): {**vars(row), "path": stored(row.path), "indexed_at": when}
              for row, when in zip(rows, times)}
    insert = _insert(conn, images)
    replace = {name: insert.excluded[name] for name in (*FileRow.__dataclass_fields__, "indexed_at") if name != "path"}
    upsert = insert.on_conflict_do_update(index_elements=[images.c.path], set_=replace)
    ids: dict[str, int] = {}
    for paths in chunks(sorted(values)):
        batch = [values[path] for path in paths]
        if conn.dialect.insert_executemany_returning:
            ids.update(conn.execute(upsert.returning(images.c.path, images.c.image_id), batch).all())
        else:  # SQLite before 3.35 has no RETURNING, but one writer: reading the ids back is as good
            conn.execute(upsert, batch)
            ids.update(conn.execute(sa.select(images.c.path, images.c.image_id).where(images.c.path.in_(paths))).all())
    _delete_labels(conn, t, sorted(set(ids.values())))  # a new row has none: deleting is a cheap no-op
    return [ids[stored(row.path)] for row in rows]


def save_images(conn: sa.Connection, t: Tables, items: list[tuple[FileRow, "object | None"]]) -> None:
    """Store files with their labels (an `indexer.regions.Regions`, or None for a failed file)."""
    if not items:
        return
    ids = upsert_images(conn, t, [row for row, _ in items])
    image_rows, cell_rows, box_rows, text_rows, word_rows = [], [], [], [], []
    for image_id, (_, regions) in zip(ids, items):
        if regions is not None:
            image_rows += [{"image_id": image_id, **label._asdict()} for label in regions.image_labels]
            cell_rows += [{"image_id": image_id, **label._asdict()} for label in regions.cell_labels]
            box_rows += [box_row(image_id, number, box) for number, box in enumerate(regions.boxes)]
            for number, line in enumerate(getattr(regions, "texts", ())):
                text_rows.append(text_row(image_id, number, line))
                word_rows += word_rows_of(image_id, number, line)
    for table, rows in ((t.image_labels, image_rows), (t.cell_labels, cell_rows), (t.boxes, box_rows),
                        (t.texts, text_rows), (t.text_words, word_rows)):
        if rows:
            conn.execute(table.insert(), rows)
    runs.record(conn, [image_id for image_id, (_, regions) in zip(ids, items) if regions is not None])


def text_row(image_id: int, number: int, line) -> dict:
    """A ``texts`` row: line ``number`` of an image, from an `indexer.regions.TextLine`."""
    return {"image_id": image_id, "line": number, "x0": line.left, "y0": line.top, "x1": line.right,
            "y1": line.bottom, "confidence": line.confidence, "cells": line.cells, "content": line.content}


def word_rows_of(image_id: int, number: int, line) -> list[dict]:
    """The ``text_words`` rows of line ``number`` (`indexer.regions.TextLine`): one per word, and with several
    words, one of them run together at position `indexer.words.JOINED`."""
    placed = list(enumerate(line.words))
    if len(line.words) > 1:
        placed.append((JOINED, joined(line.words)))
    return [{"image_id": image_id, "line": number, "position": position, "word": word, "cells": line.cells,
             "confidence": line.confidence} for position, word in placed]


def box_row(image_id: int, number: int, box: Box) -> dict:
    """A ``boxes`` row: box ``number`` (0 the best) of an image, from an `indexer.boxes.Box`."""
    class_id, x0, y0, x1, y1, confidence = box
    return {"image_id": image_id, "box": number, "class_id": int(class_id), "x0": float(x0), "y0": float(y0),
            "x1": float(x1), "y1": float(y1), "confidence": float(confidence)}


def copy_images(conn: sa.Connection, t: Tables, items: list[tuple[FileRow, int]]) -> None:
    """Store files whose content another row (the ``int``, an image id) already labelled: copy its labels."""
    if not items:
        return
    ids = upsert_images(conn, t, [row for row, _ in items])
    for image_id, (_, source_id) in zip(ids, items):
        for table, columns in ((t.image_labels, ("class_id", "score", "share")),
                               (t.cell_labels, ("cell", "class_id", "score", "coverage")),
                               (t.boxes, BOX_COLUMNS), (t.texts, TEXT_COLUMNS), (t.text_words, WORD_COLUMNS)):
            source = sa.select(sa.literal(image_id), *(table.c[c] for c in columns)).where(
                table.c.image_id == source_id
            )
            conn.execute(table.insert().from_select(["image_id", *columns], source))
    runs.record(conn, ids)


def update_files(conn: sa.Connection, t: Tables, updates: list[tuple]) -> None:
    """Point rows at a file's new ``(image_id, path, size_bytes, mtime_ns[, taken])``: moved or merely touched;
    ``taken`` as read from the file now (left out or None: keep the row's)."""
    for dated in (False, True):
        rows = [{"id_": i, "path": stored(p), "size_bytes": s, "mtime_ns": m, **(taken_fields(d[0]) if dated else {})}
                for i, p, s, m, *d in updates if bool(d and d[0] is not None) == dated]
        if rows:
            conn.execute(t.images.update().where(t.images.c.image_id == sa.bindparam("id_")), rows)


def set_taken(conn: sa.Connection, t: Tables, dates: list[tuple[int, "Taken"]]) -> None:
    """Store the dates read for rows labelled before the index stored them: ``(image_id, taken)``."""
    if dates:
        conn.execute(
            t.images.update().where(t.images.c.image_id == sa.bindparam("id_")),
            [{"id_": image_id, **taken_fields(taken)} for image_id, taken in dates],
        )


def delete_images(conn: sa.Connection, t: Tables, image_ids: list[int]) -> None:
    _delete_labels(conn, t, image_ids)
    for chunk in chunks(image_ids):
        conn.execute(t.images.delete().where(t.images.c.image_id.in_(chunk)))
