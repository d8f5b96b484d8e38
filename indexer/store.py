"""The index database: `schema.sql` applied through SQLAlchemy Core, version checks, table handles.

Any SQLAlchemy URL works; SQLite files are opened in WAL mode with foreign keys on, so a reader (a query)
never blocks the indexer and a killed writer leaves the last committed batch intact.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, ArgumentError

from indexer import labels
from indexer.errors import SchemaVersionError, StoreError

SCHEMA_VERSION = 1
DB_ENV = "IMGIDX_DB"
DEFAULT_DB_NAME = "index.db"
TABLE_NAMES = ("meta", "classes", "class_ancestors", "images", "image_labels", "cell_labels")
SQLITE_BUSY_TIMEOUT_S = 30


def default_db_url() -> str:
    """``$IMGIDX_DB``, else an SQLite file in the platform's user data directory."""
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    import platformdirs

    return "sqlite:///" + str(Path(platformdirs.user_data_dir("imgidx")) / DEFAULT_DB_NAME)


def as_url(db: str) -> str:
    """Accept a plain file path as well as an SQLAlchemy URL."""
    return db if "://" in db else "sqlite:///" + str(Path(db).expanduser().resolve())


@lru_cache(maxsize=1)
def schema_statements() -> tuple[str, ...]:
    """The DDL statements of ``schema.sql``, comments stripped, in order."""
    text = resources.files("indexer").joinpath("data", "schema.sql").read_text(encoding="utf-8")
    text = re.sub(r"--[^\n]*", "", text)
    return tuple(stmt.strip() for stmt in text.split(";") if stmt.strip())


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(db: str) -> Engine:
    """An engine for ``db`` (URL or file path); SQLite gets WAL, foreign keys and a busy timeout."""
    url = as_url(db)
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        raise StoreError(f"not a database URL: {db}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url)


def open_index(db: str, create: bool = True) -> Engine:
    """Open (and with ``create`` make) an index; refuse one of another schema version.

    Raises `StoreError` when the file is not an imgidx index (or not a database at all) and
    `SchemaVersionError` when it was written by another version of the schema.
    """
    path = sqlite_path(as_url(db))
    if path is not None:
        if not path.exists() and not create:
            raise StoreError(f"no index at {path}; build one with: imgidx index FOLDER --db {path}")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(db)
    try:
        with engine.begin() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            if not existing:
                if not create:
                    raise StoreError(f"{db} is an empty database, not an imgidx index")
                _create(conn)
            elif "meta" not in existing:
                raise StoreError(f"{db} is not an imgidx index (it has other tables)")
            else:
                _check_version(conn, db)
    except DBAPIError as exc:
        engine.dispose()
        reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"cannot open index {db}: {reason}") from None
    except StoreError:
        engine.dispose()
        raise
    return engine


def _create(conn: sa.Connection) -> None:
    for statement in schema_statements():
        conn.exec_driver_sql(statement)
    t = tables(conn)
    conn.execute(t.meta.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
    conn.execute(
        t.classes.insert(),
        [{"class_id": c.index, "wnid": c.wnid, "name": c.name, "names": ", ".join(c.names)} for c in labels.classes()],
    )
    conn.execute(
        t.class_ancestors.insert(),
        [
            {"class_id": index, "ancestor_wnid": a.wnid, "ancestor_name": a.lemma}
            for index, chain in enumerate(labels.ancestors())
            for a in chain
        ],
    )


def _check_version(conn: sa.Connection, db: str) -> None:
    row = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    if row is None:
        raise StoreError(f"{db} is not an imgidx index (no schema version)")
    found = int(row[0])
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{db} has schema version {found}, newer than this imgidx reads ({SCHEMA_VERSION}); upgrade imgidx"
        )
    if found < SCHEMA_VERSION:
        # No older released schema exists yet: a future version adds its upgrade steps here.
        raise SchemaVersionError(
            f"{db} has schema version {found} and no upgrade to {SCHEMA_VERSION} exists; rebuild it with imgidx index"
        )


@dataclass(frozen=True)
class Tables:
    """SQLAlchemy handles on the tables of `schema.sql`, reflected from the live database."""

    meta: sa.Table
    classes: sa.Table
    class_ancestors: sa.Table
    images: sa.Table
    image_labels: sa.Table
    cell_labels: sa.Table


def tables(bind: Engine | sa.Connection) -> Tables:
    """Reflect the index's tables, so `schema.sql` stays the one definition of them."""
    metadata = sa.MetaData()
    metadata.reflect(bind=bind, only=list(TABLE_NAMES))
    return Tables(**{name: metadata.tables[name] for name in TABLE_NAMES})


def read_meta(conn: sa.Connection) -> dict[str, str]:
    return {key: value for key, value in conn.execute(sa.text("SELECT key, value FROM meta"))}


# --- Settings: the model, working size and precision every label row of the index was computed with ---

SETTING_KEYS = ("model", "working_size", "precision")
#: Rows per statement when a list of values goes into ``IN (...)`` (SQLite's old limit is 999 variables).
IN_CHUNK = 500


@dataclass(frozen=True)
class IndexSettings:
    """How an index's labels were computed; one index never mixes two settings."""

    model: str
    working_size: int
    precision: str

    def describe(self) -> str:
        return f"{self.model} at size {self.working_size} ({self.precision})"


def read_settings(conn: sa.Connection) -> IndexSettings | None:
    """The index's settings, or None for an index nothing was written to yet."""
    meta = read_meta(conn)
    if not all(key in meta for key in SETTING_KEYS):
        return None
    return IndexSettings(meta["model"], int(meta["working_size"]), meta["precision"])


def write_settings(conn: sa.Connection, t: Tables, settings: IndexSettings) -> None:
    values = {"model": settings.model, "working_size": str(settings.working_size), "precision": settings.precision}
    conn.execute(t.meta.delete().where(t.meta.c.key.in_(SETTING_KEYS)))
    conn.execute(t.meta.insert(), [{"key": k, "value": v} for k, v in values.items()])


def mark_all_stale(conn: sa.Connection, t: Tables, drop_labels: bool) -> None:
    """Make every image due for re-indexing; ``drop_labels`` when the old labels must not be mixed in."""
    if drop_labels:
        conn.execute(t.cell_labels.delete())
        conn.execute(t.image_labels.delete())
    conn.execute(t.images.update().values(model=None, working_size=None))


# --- Write path: one call per kind of change, all inside the caller's transaction ---


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

    def is_current(self, settings: IndexSettings) -> bool:
        """Labels are stored, computed with ``settings``."""
        return self.error is None and self.model == settings.model and self.working_size == settings.working_size


def file_records(conn: sa.Connection, t: Tables) -> list[FileRecord]:
    images = t.images
    columns = [getattr(images.c, f) for f in FileRecord.__dataclass_fields__]
    return [FileRecord(*row) for row in conn.execute(sa.select(*columns))]


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


def utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _chunks(items: list, size: int = IN_CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _delete_labels(conn: sa.Connection, t: Tables, image_ids: list[int]) -> None:
    for chunk in _chunks(image_ids):
        conn.execute(t.cell_labels.delete().where(t.cell_labels.c.image_id.in_(chunk)))
        conn.execute(t.image_labels.delete().where(t.image_labels.c.image_id.in_(chunk)))


def _ids_by_path(conn: sa.Connection, images: sa.Table, paths: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(paths):
        ids.update(conn.execute(sa.select(images.c.path, images.c.image_id).where(images.c.path.in_(chunk))).all())
    return ids


def upsert_images(
    conn: sa.Connection, t: Tables, rows: list[FileRow], indexed_at: list[str] | None = None
) -> list[int]:
    """Insert or replace the rows by path (their old labels deleted); their image ids, in order.

    ``indexed_at`` (one per row) keeps the times of rows copied from another index; default now.
    """
    images = t.images
    times = indexed_at if indexed_at is not None else [utc_now()] * len(rows)
    paths = [row.path for row in rows]
    ids = _ids_by_path(conn, images, paths)
    values = [{**vars(row), "indexed_at": when} for row, when in zip(rows, times)]
    old = [dict(v, old_id=ids[v["path"]]) for v in values if v["path"] in ids]
    new = [v for v in values if v["path"] not in ids]
    if old:
        _delete_labels(conn, t, [v["old_id"] for v in old])
        conn.execute(images.update().where(images.c.image_id == sa.bindparam("old_id")), old)
    if new:
        conn.execute(images.insert(), new)
        ids.update(_ids_by_path(conn, images, [v["path"] for v in new]))
    return [ids[path] for path in paths]


def save_images(conn: sa.Connection, t: Tables, items: list[tuple[FileRow, "object | None"]]) -> None:
    """Store files with their labels (an `indexer.regions.Regions`, or None for a failed file)."""
    if not items:
        return
    ids = upsert_images(conn, t, [row for row, _ in items])
    image_rows, cell_rows = [], []
    for image_id, (_, regions) in zip(ids, items):
        if regions is not None:
            image_rows += [{"image_id": image_id, **label._asdict()} for label in regions.image_labels]
            cell_rows += [{"image_id": image_id, **label._asdict()} for label in regions.cell_labels]
    if image_rows:
        conn.execute(t.image_labels.insert(), image_rows)
    if cell_rows:
        conn.execute(t.cell_labels.insert(), cell_rows)


def copy_images(conn: sa.Connection, t: Tables, items: list[tuple[FileRow, int]]) -> None:
    """Store files whose content another row (the ``int``, an image id) already labelled: copy its labels."""
    if not items:
        return
    ids = upsert_images(conn, t, [row for row, _ in items])
    for image_id, (_, source_id) in zip(ids, items):
        for table, columns in ((t.image_labels, ("class_id", "score", "share")),
                               (t.cell_labels, ("cell", "class_id", "score", "coverage"))):
            source = sa.select(sa.literal(image_id), *(table.c[c] for c in columns)).where(
                table.c.image_id == source_id
            )
            conn.execute(table.insert().from_select(["image_id", *columns], source))


def update_files(conn: sa.Connection, t: Tables, updates: list[tuple[int, str, int, int]]) -> None:
    """Point rows at a file's new ``(image_id, path, size_bytes, mtime_ns)``: moved or merely touched."""
    if updates:
        conn.execute(
            t.images.update().where(t.images.c.image_id == sa.bindparam("id_")),
            [{"id_": i, "path": p, "size_bytes": s, "mtime_ns": m} for i, p, s, m in updates],
        )


def delete_images(conn: sa.Connection, t: Tables, image_ids: list[int]) -> None:
    _delete_labels(conn, t, image_ids)
    for chunk in _chunks(image_ids):
        conn.execute(t.images.delete().where(t.images.c.image_id.in_(chunk)))


# --- Read-back for `imgidx show` and `imgidx stats` ---


@dataclass(frozen=True)
class StoredLabel:
    """One stored class: ``extent`` is the image share or the cell coverage."""

    class_id: int
    name: str
    score: float
    extent: float


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


def image_report(conn: sa.Connection, path: str | None = None, content_hash: str | None = None) -> ImageReport | None:
    """The image at ``path`` (or, failing that, one with ``content_hash``), or None."""
    t = tables(conn)
    images = t.images
    row = None
    if path is not None:
        row = conn.execute(sa.select(images).where(images.c.path == path)).mappings().first()
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
        .where(t.image_labels.c.image_id == row["image_id"])
        .order_by(t.image_labels.c.score.desc())
    )
    cells: list[list[StoredLabel]] = [[] for _ in range(9)]
    cell_rows = conn.execute(
        sa.select(t.cell_labels.c.cell, t.cell_labels.c.class_id, names.c.name, t.cell_labels.c.score,
                  t.cell_labels.c.coverage)
        .join(names, names.c.class_id == t.cell_labels.c.class_id)
        .where(t.cell_labels.c.image_id == row["image_id"])
        .order_by(t.cell_labels.c.cell, t.cell_labels.c.score.desc())
    )
    for cell, *label in cell_rows:
        cells[cell].append(StoredLabel(*label))
    fields = {k: row[k] for k in ImageReport.__dataclass_fields__ if k not in ("labels", "cells")}
    return ImageReport(**fields, labels=[StoredLabel(*r) for r in image_labels], cells=cells)


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


def index_stats(conn: sa.Connection, top: int = 10, failures: int = 20) -> IndexStats:
    """``top`` labels by the number of images they lead; up to ``failures`` failed files."""
    t = tables(conn)
    images, il = t.images, t.image_labels
    count = sa.func.count()
    settings = read_settings(conn)
    failed = conn.execute(sa.select(count).where(images.c.error.is_not(None))).scalar_one()
    total, last = conn.execute(sa.select(count, sa.func.max(images.c.indexed_at))).one()
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
        .order_by(count.desc())
    ).all()
    rank = sa.func.row_number().over(partition_by=il.c.image_id, order_by=(il.c.score.desc(), il.c.class_id))
    ranked = sa.select(il.c.class_id, rank.label("rank")).subquery()
    leads = sa.func.count().label("leads")
    top_labels = conn.execute(
        sa.select(ranked.c.class_id, t.classes.c.name, leads)
        .join(t.classes, t.classes.c.class_id == ranked.c.class_id)
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.class_id, t.classes.c.name)
        .order_by(leads.desc(), ranked.c.class_id)
        .limit(top)
    ).all()
    failure_rows = conn.execute(
        sa.select(images.c.path, images.c.error)
        .where(images.c.error.is_not(None))
        .order_by(images.c.path)
        .limit(failures)
    ).all()
    return IndexStats(
        images=total,
        labelled=labelled,
        failed=failed,
        stale=total - labelled - failed,
        image_label_rows=conn.execute(sa.select(sa.func.count()).select_from(il)).scalar_one(),
        cell_label_rows=conn.execute(sa.select(sa.func.count()).select_from(t.cell_labels)).scalar_one(),
        settings=settings,
        models=list(models),
        top_labels=list(top_labels),
        failures=list(failure_rows),
        last_indexed=last,
    )
