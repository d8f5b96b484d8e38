"""The read path: what `query`, `serve`, `show`, `stats` and `redact` read back from an index (its
calibration, boxes, one image's report, the whole index's counts), every stored value checked before use:
SQLite stores any value in any column."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sqlalchemy as sa

from indexer import boxes as box_rules, calibration, labels
from indexer.labels import COMPOUND_BASE
from indexer.boxes import Box
from indexer.geometry import CELL_NAMES
from indexer.names import restored, stored
from indexer.words import Line
from indexer.store.schema import (
    BOX_COLUMNS, SKIPPED_PREFIX, IndexSettings, Tables, chunks, damaged, read_settings, shown_engine, tables,
)


def read_calibration(conn: sa.Connection) -> calibration.Calibration:
    """The calibration the index's scores are read with (a `CalibrationError` if this imgidx has another)."""
    settings = read_settings(conn)
    if settings is None:  # nothing stored yet: no score to read
        return calibration.uncalibrated("none")
    return calibration.check_version(settings.model, settings.calibration, shown_engine(conn.engine))


def bytewise(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """``column`` ordered by its bytes on PostgreSQL too (whose databases usually sort text by a locale's
    rules), as SQLite's BINARY collation orders it: paths list in the same order on both."""
    return column.collate("C") if dialect == "postgresql" else column


def _box_select(t: Tables, classes: frozenset[int] | None) -> sa.Select:
    b = t.boxes
    select = sa.select(b.c.image_id, b.c.class_id, b.c.x0, b.c.y0, b.c.x1, b.c.y1, b.c.confidence)
    return select if classes is None else select.where(b.c.class_id.in_(sorted(classes)))


def read_boxes(conn: sa.Connection, image_id: int, t: Tables | None = None,
               classes: frozenset[int] | None = None) -> list[Box]:
    """The boxes stored for one image (of ``classes`` only, if given), best first (none of a detector the
    index was built without: see `IndexSettings.faces` and `IndexSettings.objects`)."""
    t = t or tables(conn)
    rows = conn.execute(_box_select(t, classes).where(t.boxes.c.image_id == image_id).order_by(t.boxes.c.box)).all()
    return [_stored_box(conn, image_id, row) for _, *row in rows]  # read whole before a check may raise


def _stored_box(conn: sa.Connection, image_id: int, row) -> Box:
    """A ``boxes`` row's class, corners and confidence, each checked to be a number (`stored_number`)."""
    class_id, *numbers = row
    checked = (stored_number(value, f"boxes.{name} of image {image_id}", conn)
               for name, value in zip(BOX_COLUMNS[2:], numbers))
    return Box(int(stored_number(class_id, f"boxes.class_id of image {image_id}", conn)), *checked)


def boxes_of(conn: sa.Connection, image_ids: list[int], t: Tables | None = None,
             classes: frozenset[int] | None = None) -> dict[int, list[Box]]:
    """`read_boxes` for many images at once (images without boxes left out)."""
    t = t or tables(conn)
    found: dict[int, list[Box]] = {}
    for chunk in chunks(sorted(set(image_ids))):
        rows = conn.execute(
            _box_select(t, classes).where(t.boxes.c.image_id.in_(chunk)).order_by(t.boxes.c.image_id, t.boxes.c.box)
        ).all()
        for image_id, *box in rows:
            found.setdefault(image_id, []).append(_stored_box(conn, image_id, box))
    return found


def box_overlays(conn: sa.Connection, image_id: int, min_confidence: float = box_rules.SHOWN_FROM) -> list[dict]:
    """The boxes of one photo from ``min_confidence`` up, as a page places them (`indexer.boxes.overlay`:
    fractions of the photo as seen, after EXIF orientation, its label "person 87%" and whether it is a face),
    best first."""
    t = tables(conn)
    size = conn.execute(sa.select(t.images.c.width, t.images.c.height).where(t.images.c.image_id == image_id)).first()
    if size is None or not size[0] or not size[1]:
        return []
    return [box_rules.overlay(box, *size) for box in read_boxes(conn, image_id, t)
            if box_rules.worth_showing(box, min_confidence)] + [
        box_rules.text_overlay(line, *size) for line in read_texts(conn, [image_id], t).get(image_id, [])]


@dataclass(frozen=True)
class StoredLabel:
    """One stored class: ``score`` its calibrated confidence, ``evidence`` what is stored, ``extent`` the
    image share or the cell coverage."""

    class_id: int
    name: str
    score: float
    extent: float
    evidence: float


@dataclass(frozen=True)
class ImageReport:
    """Everything the index holds about one image; ``cells[c]`` is cell ``c``'s labels, best first."""

    path: str
    size_bytes: int
    content_hash: str | None
    width: int | None
    height: int | None
    model: str | None
    working_size: int | None
    indexed_at: str
    error: str | None
    labels: list[StoredLabel]
    cells: list[list[StoredLabel]]
    #: The faces found, best first; None when the index does not look for faces.
    faces: list[Box] | None = None
    #: The objects found, best first; None when the index does not look for objects.
    objects: list[Box] | None = None
    #: When it was taken and with which camera (schema.sql's ``images.taken_*``, ``camera``).
    taken_at: str | None = None
    taken_offset: str | None = None
    taken_source: str | None = None
    camera: str | None = None
    #: The lines of text read (`indexer.words.Line`), in the reader's order; None when the index reads none.
    texts: list[Line] | None = None


def image_report(conn: sa.Connection, path: str | None = None, content_hash: str | None = None) -> ImageReport | None:
    """The image at ``path`` (or, failing that, one with ``content_hash``), or None."""
    t = tables(conn)
    images = t.images
    row = None
    if path is not None:
        row = conn.execute(sa.select(images).where(images.c.path == stored(path))).mappings().first()
    if row is None and content_hash is not None:
        row = (
            conn.execute(
                sa.select(images)
                .where(images.c.content_hash == content_hash, images.c.error.is_(None))
                .order_by(images.c.image_id)
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    names = t.classes
    image_labels = conn.execute(
        sa.select(t.image_labels.c.class_id, names.c.name, t.image_labels.c.score, t.image_labels.c.share)
        .join(names, names.c.class_id == t.image_labels.c.class_id)
        .where(t.image_labels.c.image_id == row["image_id"], t.image_labels.c.class_id < COMPOUND_BASE)
        .order_by(t.image_labels.c.score.desc(), t.image_labels.c.class_id)
    ).all()
    cells: list[list[StoredLabel]] = [[] for _ in range(9)]
    cell_rows = conn.execute(
        sa.select(t.cell_labels.c.cell, t.cell_labels.c.class_id, names.c.name, t.cell_labels.c.score,
                  t.cell_labels.c.coverage)
        .join(names, names.c.class_id == t.cell_labels.c.class_id)
        .where(t.cell_labels.c.image_id == row["image_id"], t.cell_labels.c.class_id < COMPOUND_BASE)
        .order_by(t.cell_labels.c.cell, t.cell_labels.c.score.desc(), t.cell_labels.c.class_id)
    ).all()  # read whole: a statement left open by a check that raises would keep its snapshot (SQLite)
    cal = read_calibration(conn)

    whose = restored(row["path"])

    def labelled(table: str, extent_column: str, class_id: int, name: str, evidence, extent) -> StoredLabel:
        evidence = stored_number(evidence, f"{table}.score of {whose}", conn)
        extent = stored_number(extent, f"{table}.{extent_column} of {whose}", conn)
        return StoredLabel(class_id, name, cal.probability(evidence, (class_id,)), extent, evidence)

    def best_first(found: list[StoredLabel]) -> list[StoredLabel]:
        return sorted(found, key=lambda label: (-label.score, -label.evidence, label.class_id))

    for cell, *label in cell_rows:
        cell = stored_cell(cell, f"cell_labels.cell of {whose}", conn)
        cells[cell].append(labelled("cell_labels", "coverage", *label))
    fields = {k: row[k] for k in ImageReport.__dataclass_fields__ if k not in ("labels", "cells", "faces", "objects", "texts")}
    fields["path"] = restored(fields["path"])
    settings = read_settings(conn)
    found = read_boxes(conn, row["image_id"], t)
    faces = [box for box in found if box.class_id == labels.FACE_CLASS]
    objects = [box for box in found if box.class_id != labels.FACE_CLASS]
    return ImageReport(
        **fields, labels=best_first([labelled("image_labels", "share", *r) for r in image_labels]),
        cells=[best_first(c) for c in cells],
        faces=faces if settings is not None and settings.faces else None,
        objects=objects if settings is not None and settings.objects else None,
        texts=read_texts(conn, [row["image_id"]], t).get(row["image_id"], []) if settings is not None and settings.text
        else None,
    )


def read_texts(conn: sa.Connection, image_ids: list[int], t=None) -> dict[int, list[Line]]:
    """The lines of text of each image (those with any), in the reader's order."""
    t = t if t is not None else tables(conn)
    texts = t.texts
    found: dict[int, list[Line]] = {}
    for chunk in chunks(image_ids):
        rows = conn.execute(
            sa.select(texts.c.image_id, texts.c.x0, texts.c.y0, texts.c.x1, texts.c.y1, texts.c.content,
                      texts.c.confidence)
            .where(texts.c.image_id.in_(chunk)).order_by(texts.c.image_id, texts.c.line)
        ).all()
        for image_id, *line in rows:
            found.setdefault(image_id, []).append(Line(*line))
    return found


@dataclass(frozen=True)
class IndexStats:
    """Counts and summaries of a whole index."""

    images: int
    labelled: int
    failed: int
    stale: int
    image_label_rows: int
    cell_label_rows: int
    settings: IndexSettings | None
    models: list[tuple[str | None, int | None, int]]
    top_labels: list[tuple[int, str, int]]
    failures: list[tuple[str, str]]
    last_indexed: str | None
    #: Entries the walk skipped (a FIFO, a broken link, a path too long): rows whose error is "skipped: REASON".
    skipped: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    #: Labelled photos by where their date comes from (``images.taken_source``; None: not read yet), and the
    #: earliest and latest date taken.
    taken_sources: dict[str | None, int] = field(default_factory=dict)
    taken_range: tuple[str | None, str | None] = (None, None)


def _calibration_for_stats(conn: sa.Connection, settings: IndexSettings | None) -> calibration.Calibration:
    """The index's calibration; for an index of another calibration (which `query` refuses, asking for a
    rebuild) the evidence as it is, so `stats` still describes it."""
    try:
        return read_calibration(conn)
    except calibration.CalibrationError:
        return calibration.uncalibrated(settings.model if settings else "none")


def _scale_of(cal: calibration.Calibration, class_id: sa.ColumnElement) -> sa.ColumnElement:
    """`Calibration.scale` of the ImageNet class in ``class_id``: a balanced tree of CASEs over the class
    numbers, about ten comparisons a row (a join with a table of the scales made `stats` 3.8 times slower
    on SQLite; this costs about 1.3 times the ranking by evidence)."""

    def part(low: int, high: int) -> sa.ColumnElement:
        if high - low == 1:
            prior = cal.prior((low,))
            return sa.literal(cal.scale((low,)) if prior else 0.0, sa.Float)
        middle = (low + high) // 2
        return sa.case((class_id < middle, part(low, middle)), else_=part(middle, high))

    return part(0, labels.NUM_CLASSES)


def _confidence_order(cal: calibration.Calibration, class_id: sa.ColumnElement, evidence: sa.ColumnElement,
                      dialect: str) -> sa.ColumnElement:
    """A value that orders labels as their calibrated confidence (`Calibration.probability`) does, cheaper
    than the confidence itself: the curve's input ``evidence * scale`` held within the curve's first and last
    knots (the curve is flat outside them and rises strictly between, so this ranks exactly as the
    confidence, ties included). A class read as stored (faces: its confidence is its evidence) gets the
    input that would give its confidence, through the curve inverted (beyond the knots, by the confidence's
    own distance from them)."""
    knots = cal.knots
    (u_first, p_first), (u_last, p_last) = knots[0], knots[-1]
    least, greatest = (sa.func.least, sa.func.greatest) if dialect == "postgresql" else (sa.func.min, sa.func.max)
    held = greatest(least(evidence * _scale_of(cal, class_id), u_last), u_first)
    confidence = sa.case((evidence > 1.0, sa.literal(1.0, sa.Float)), else_=evidence)
    inverse = [(confidence <= p_first, u_first - (p_first - confidence))]
    for (u0, p0), (u1, p1) in zip(knots, knots[1:]):
        inverse.append((confidence <= p1, u0 + (confidence - p0) * ((u1 - u0) / (p1 - p0))))
    as_stored = sa.case(*inverse, else_=u_last + (confidence - p_last))
    return sa.case((class_id.in_(sorted(calibration.AS_STORED)), as_stored), else_=held)


def index_stats(conn: sa.Connection, top: int = 10, failures: int = 20) -> IndexStats:
    """``top`` labels by the number of images they lead (by calibrated confidence, as `image_report` and
    every other output rank them; then evidence, then class number); up to ``failures`` failed files."""
    t = tables(conn)
    images, il = t.images, t.image_labels
    count = sa.func.count()
    settings = read_settings(conn)
    skip = images.c.error.startswith(SKIPPED_PREFIX, autoescape=True)
    failed_rows = sa.and_(images.c.error.is_not(None), sa.not_(skip))
    failed = conn.execute(sa.select(count).where(failed_rows)).scalar_one()
    skipped = conn.execute(sa.select(count).where(skip)).scalar_one()
    dialect = conn.dialect.name
    total, last = conn.execute(sa.select(count, sa.func.max(bytewise(images.c.indexed_at, dialect)))).one()
    labelled = 0
    if settings is not None:
        labelled = conn.execute(
            sa.select(count).where(
                images.c.error.is_(None),
                images.c.model == settings.model,
                images.c.working_size == settings.working_size,
            )
        ).scalar_one()
    models = conn.execute(
        sa.select(images.c.model, images.c.working_size, count)
        .where(images.c.error.is_(None))
        .group_by(images.c.model, images.c.working_size)
        .order_by(count.desc(), bytewise(images.c.model, dialect), images.c.working_size)
    ).all()
    confidence = _confidence_order(_calibration_for_stats(conn, settings), il.c.class_id, il.c.score, dialect)
    rank = sa.func.row_number().over(
        partition_by=il.c.image_id, order_by=(confidence.desc(), il.c.score.desc(), il.c.class_id)
    )
    ranked = sa.select(il.c.class_id, rank.label("rank")).where(il.c.class_id < COMPOUND_BASE).subquery()
    leads = sa.func.count().label("leads")
    top_labels = conn.execute(
        sa.select(ranked.c.class_id, t.classes.c.name, leads)
        .join(t.classes, t.classes.c.class_id == ranked.c.class_id)
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.class_id, t.classes.c.name)
        .order_by(leads.desc(), ranked.c.class_id)
        .limit(top)
    ).all()
    sources = conn.execute(
        sa.select(images.c.taken_source, count).where(images.c.error.is_(None)).group_by(images.c.taken_source)
    ).all()
    # one aggregate a statement: each is then read from either end of the index on taken_at
    earliest, latest = (conn.execute(sa.select(aggregate(images.c.taken_at))).scalar_one()
                        for aggregate in (sa.func.min, sa.func.max))

    def listed(where: sa.ColumnElement) -> list[tuple[str, str]]:
        select = sa.select(images.c.path, images.c.error).where(where).order_by(bytewise(images.c.path, dialect))
        return [(restored(path), error) for path, error in conn.execute(select.limit(failures))]

    return IndexStats(
        images=total,
        labelled=labelled,
        failed=failed,
        stale=total - labelled - failed - skipped,
        image_label_rows=conn.execute(sa.select(sa.func.count()).select_from(il)).scalar_one(),
        cell_label_rows=conn.execute(sa.select(sa.func.count()).select_from(t.cell_labels)).scalar_one(),
        settings=settings,
        models=list(models),
        top_labels=list(top_labels),
        failures=listed(failed_rows),
        last_indexed=last,
        skipped=skipped,
        skipped_files=[(path, error.removeprefix(SKIPPED_PREFIX)) for path, error in listed(skip)],
        taken_sources=dict(sources),
        taken_range=(earliest, latest),
    )


def stored_number(value, what: str, conn: sa.Connection) -> float:
    """``value`` read from the index as a number, or `damaged` naming ``what`` held it: SQLite stores any
    value in any column, so a score of 'abc' reaches Python unless something checks it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise damaged(shown_engine(conn.engine), f"{what} is {_shown_value(value)}, not a number")


def stored_cell(value, what: str, conn: sa.Connection) -> int:
    """``value`` read from the index as a cell (0-8), or `damaged`: the schema's CHECK holds only where the
    database enforced it."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(CELL_NAMES):
        return value
    raise damaged(shown_engine(conn.engine), f"{what} is {_shown_value(value)}, not a cell (0 to 8)")


def _shown_value(value) -> str:
    """A stored value as a message shows it: a number as it is, anything else quoted and cut short."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return repr(str(value)[:40])
