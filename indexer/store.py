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
