"""Opening an index: its URL, an engine on it, and the checks between the database and the command that
opens it. An index is made here, its schema version checked, an older one upgraded in place, and a damaged
one refused or, for ``index --reindex``, repaired.

SQLite files are opened in WAL mode with foreign keys on, so a reader (a query) never blocks the indexer and
a killed writer leaves the last committed batch intact; one writer at a time (`indexer.locking.writer_lock`).
An existing file is first looked at read-only, so a file that is not an index is refused unchanged; commands
that only read keep it read-only (`open_index`), as PostgreSQL sessions are made read-only for them.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError

from indexer import calibration, labels
from indexer.boxes import Box
from indexer.errors import SchemaVersionError, StoreError
from indexer.store import runs
from indexer.store.schema import (
    BOX_COLUMNS, DETECTOR_OFF, SCHEMA_VERSION, SETTING_KEYS, TABLE_NAMES, Tables, damaged, declared_tables,
    in_memory, mark_all_stale, meta_number, read_meta, schema_statements, shown, sqlite_path, tables,
)

#: The oldest version whose labels this one keeps: its upgrade only adds what the detectors need (`_upgrade`).
LABELS_KEPT_FROM = 2
#: The version that stored faces in a table of their own, which version 4 turned into the boxes table.
FACES_TABLE_VERSION = 3
#: The version that added the object detector's classes and boxes.
OBJECTS_VERSION = 4
#: The version that stores when photos were taken (``images.taken_*``, ``camera``).
TAKEN_VERSION = 5
#: The ``images`` columns `TAKEN_VERSION` added, as `schema.sql` declares them.
TAKEN_COLUMNS = ("taken_at", "taken_offset", "taken_source", "camera")
DB_ENV = "IMGIDX_DB"
DEFAULT_DB_NAME = "index.db"
SQLITE_BUSY_TIMEOUT_S = 30
#: The backends an index can live in: the write path needs their INSERT ... ON CONFLICT.
BACKENDS = ("sqlite", "postgresql")
#: Seconds to wait for a PostgreSQL server before giving up (unless the URL sets connect_timeout).
PG_CONNECT_TIMEOUT_S = 10
#: Key of the PostgreSQL advisory lock that lets one opener at a time create the tables of an empty database.
PG_CREATE_LOCK = 0x696D6769  # "imgi"


def default_folder() -> Path:
    """The platform's user data folder for imgidx, where the default index lives."""
    import platformdirs

    return Path(platformdirs.user_data_dir("imgidx"))


def default_db_url() -> str:
    """``$IMGIDX_DB``, else an SQLite file in the platform's user data directory."""
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    return "sqlite:///" + str(default_folder() / DEFAULT_DB_NAME)


def as_url(db: str) -> str:
    """Accept a plain file path as well as an SQLAlchemy URL."""
    return db if "://" in db else "sqlite:///" + str(Path(db).expanduser().resolve())


def parse_url(db: str) -> sa.engine.URL:
    """``db`` (a URL or a file path) as a URL, or a `StoreError` saying it is not one."""
    try:
        return sa.engine.make_url(as_url(db))
    except (ArgumentError, ValueError):
        raise StoreError(f"not a database URL: {shown(db)}") from None


def error_reason(exc: DBAPIError) -> str:
    """The first line of a driver's error, whitespace collapsed (PostgreSQL pads "FATAL:  ...")."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return " ".join(text.strip().splitlines()[0].split()) if text.strip() else type(exc.orig or exc).__name__


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: What SQLite says when a read-only connection cannot make the WAL's shared-memory file beside the index
#: (a read-only folder or medium); such a file is then read without it (`_read_only_medium`).
READ_ONLY_MEDIUM = ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "unable to open database file",
                    "attempt to write a readonly database")


def _read_only_engine(path: Path) -> Engine:
    """An engine that opens the SQLite file read-only (``mode=ro``) and sets nothing in it: no WAL."""
    uri = path.resolve().as_uri() + "?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            if not {getattr(exc, "sqlite_errorname", None), str(exc)} & set(READ_ONLY_MEDIUM):
                raise
            return _read_only_medium(path, uri)
        return conn

    return sa.create_engine(sa.engine.URL.create("sqlite", database=str(path)), creator=connect)


def _read_only_medium(path: Path, uri: str) -> sqlite3.Connection:
    """A connection to the index at ``path`` in a folder where SQLite cannot make the WAL's shared-memory
    file (``-shm``): a read-only folder or medium, where nobody can be writing it.

    Without a WAL file the index is read as immutable. A WAL file left there (by a writer killed before it
    folded the WAL into the index, the folder made read-only since) holds committed transactions, a photo's
    deletion say, which are as much the index as the file is: so it is read, not ignored. SQLite's exclusive
    locking mode keeps the WAL's index in the connection's own memory instead of ``-shm``, and the
    ``unix-none`` VFS lets a read-only connection take that mode (it takes no locks, which nobody could
    contend for here). The cost is reading the WAL once per connection, nothing for the few MB a killed run
    leaves: on a 300,000-photo index (1.5 GB), `imgidx query` took 0.63 s without a WAL, 0.89 s with a
    76 MB one and 1.7 s with 405 MB, where copying the index and its WAL to a private folder took 6.5 s
    (and the disk space). A WAL that cannot be read is refused, in one line.
    """
    wal = Path(f"{path.resolve()}-wal")  # named as SQLite names it, after the file it opened
    if not wal.exists():
        return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
    try:
        with open(wal, "rb"):
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot read {wal}, which holds changes to the index not yet in {path.name}: {exc.strerror or exc}; "
            f"let imgidx fold them in where the folder is writable: imgidx index FOLDER --db {path}"
        ) from None
    conn = sqlite3.connect(uri + "&vfs=unix-none", uri=True, check_same_thread=False)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    return conn


#: What a read-only command's PostgreSQL sessions start with (libpq's ``options``): every transaction is
#: read-only, as SQLite's ``mode=ro`` makes the file, so no statement of `query`, `show`, `stats` or `serve`
#: can write whatever it is.
PG_READ_ONLY_OPTION = "-c default_transaction_read_only=on"


def create_engine(db: str, readonly: bool = False) -> Engine:
    """An engine for ``db`` (URL or file path); SQLite gets WAL, foreign keys and a busy timeout.

    A bare ``postgresql://`` URL uses psycopg 3 (SQLAlchemy's default there is psycopg2, which imgidx does
    not install). With ``readonly``, PostgreSQL sessions are read-only from their start (`PG_READ_ONLY_OPTION`,
    added to the URL's own ``options``): set by the server at login, so no statement, pool reset or
    forgotten execution option can undo it.
    """
    parsed = parse_url(db)
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise StoreError(f"an index lives in SQLite or PostgreSQL, not {backend}: {shown(db)}")
    try:
        if backend == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        defaults = {"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "imgidx"}
        connect_args = {k: v for k, v in defaults.items() if k not in parsed.query}
        if readonly:
            own = parsed.query.get("options") or ()
            connect_args["options"] = " ".join([*([own] if isinstance(own, str) else own), PG_READ_ONLY_OPTION])
        return sa.create_engine(parsed, connect_args=connect_args)
    except ImportError as exc:
        if parsed.get_driver_name() == "psycopg":
            raise StoreError("a PostgreSQL index needs the psycopg driver: pip install 'imgidx[postgres]'") from None
        raise StoreError(f"cannot open {shown(db)}: its driver is missing ({exc})") from None
    except ArgumentError as exc:
        raise StoreError(f"cannot open {shown(db)}: {exc}") from None


def open_index(db: str, create: bool = True, readonly: bool = False, upgrade: bool = False) -> Engine:
    """Open (and with ``create`` make) an index; refuse one of another schema version.

    An existing SQLite file is looked at read-only first, so one that is not an index is left as it was;
    with ``readonly`` it stays read-only (no WAL switch, nothing written; works in a read-only folder).
    A new file's folder must exist, except the default index's own (`_check_folder`). Raises `StoreError`
    when ``db`` is not a database URL, an in-memory one, or not an imgidx index (or not a database at all), and
    `SchemaVersionError` when it was written by another version of the schema, unless ``upgrade`` (an
    ``index --reindex`` run, which relabels everything) may bring an older one up to date (`_upgrade`).
    """
    url = parse_url(db)
    if in_memory(url):
        raise StoreError(
            f"{shown(db)} is an in-memory database, gone when imgidx exits: give a file path or sqlite:///FILE"
        )
    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            if not create:
                raise StoreError(f"no index at {path}; build one with: imgidx index FOLDER --db {path}")
            _check_folder(path)
        elif not path.is_file():
            raise StoreError(f"{path} is not a file, so not an imgidx index")
        else:
            probe = _read_only_engine(path)
            try:
                _checked(probe, db, create=create, make=False, upgrade=upgrade, readonly=readonly)
            except StoreError:
                probe.dispose()
                raise
            if readonly:
                return probe
            probe.dispose()
    engine = create_engine(db, readonly=readonly)
    return _checked(engine, db, create=create, make=create and not readonly, upgrade=upgrade, readonly=readonly)


def _check_folder(path: Path) -> None:
    """Refuse a new index whose folder does not exist, naming it: a mistyped ``--db newdir/x.db`` would
    otherwise put the index where nobody looks for it. The default index's folder (the user data folder,
    which nobody types) is made, whole."""
    folder = path.parent
    if folder.is_dir():
        return
    if folder == default_folder():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder {folder} for the index: {exc.strerror or exc}") from None
        return
    raise StoreError(f"cannot create the index {path}: its folder {folder} does not exist (imgidx makes none)")


def _checked(engine: Engine, db: str, create: bool, make: bool, upgrade: bool, readonly: bool = False) -> Engine:
    """``engine`` once its database is known to be an imgidx index of this version (made, if ``make``
    and it is empty, and upgraded if ``make`` and ``upgrade``); disposed and a `StoreError` otherwise."""
    try:
        with engine.begin() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            if not existing and make and conn.dialect.name == "postgresql":
                # Two runs starting on one empty database: the second waits, then finds the tables made.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_CREATE_LOCK})
                existing = set(sa.inspect(conn).get_table_names())
            elif not existing and make:
                # SQLite's driver opens a transaction at the first INSERT, not before DDL, so the tables would each
                # be committed alone: a run killed before the schema version was written left a file no run
                # would open. Made in one transaction, and the second of two runs waits for the first's.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                existing = set(sa.inspect(conn).get_table_names())
            if not existing:
                if not create:
                    raise StoreError(f"{shown(db)} is an empty database, not an imgidx index")
                if make:
                    _create(conn)
            elif "meta" not in existing:
                raise StoreError(f"{shown(db)} is not an imgidx index (it has other tables)")
            else:
                found = _check_version(conn, db, upgrade, write=make, readonly=readonly)
                if found == SCHEMA_VERSION or make:  # an older one: the writing open after this upgrades it
                    if found != SCHEMA_VERSION:  # upgraded just now: its tables are this version's
                        existing = set(sa.inspect(conn).get_table_names())
                    _check_tables(conn, db, existing, upgrade, repair=make and upgrade)
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(f"cannot open index {shown(db)}: {error_reason(exc)}") from None
    except StoreError:
        engine.dispose()
        raise
    _report_damage(engine, db)
    return engine


def _create(conn: sa.Connection) -> None:
    for statement in schema_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)
    t = tables(conn)
    conn.execute(t.meta.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
    _fill_classes(conn, t)


def _class_row(cls: labels.ImageNetClass) -> dict:
    return {"class_id": cls.index, "wnid": cls.wnid, "name": cls.name, "names": ", ".join(cls.names)}


def _ancestor_rows() -> list[dict]:
    """Every class's WordNet ancestors (`labels.ancestors`, one list per class id of `labels.all_classes`)."""
    return [
        {"class_id": index, "ancestor_wnid": a.wnid, "ancestor_name": a.lemma}
        for index, chain in enumerate(labels.ancestors())
        for a in chain
    ]


def _check_version(conn: sa.Connection, db: str, upgrade: bool, write: bool, readonly: bool = False) -> int:
    """Refuse an index this version cannot read; bring an older one up to date when opened for writing
    (``write``; version 1 only with ``upgrade``). A read-only opening of an older index is refused, since
    nothing may be written then. The version found (before any upgrade)."""
    row = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    if row is None:
        raise StoreError(f"{shown(db)} is not an imgidx index (no schema version)")
    found = meta_number(row[0], f"{shown(db)} is not an imgidx index this version can read: its schema version")
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{shown(db)} has schema version {found}, newer than this imgidx reads ({SCHEMA_VERSION}); upgrade imgidx"
        )
    if found < LABELS_KEPT_FROM and not upgrade:
        raise SchemaVersionError(
            f"{shown(db)} has schema version {found}, whose scores this imgidx cannot read as calibrated "
            f"ones; rebuild its labels (paths and hashes are kept): imgidx index FOLDER --db {shown(db)} --reindex"
        )
    if found < SCHEMA_VERSION:
        if readonly:
            raise SchemaVersionError(_upgrade_message(shown(db), found))
        if write:
            _upgrade(conn, found)
    return found


def _upgrade_message(db: str, found: int) -> str:
    """What to run on an index of schema version ``found`` (>= `LABELS_KEPT_FROM`) that a read-only command
    cannot read: any writing run upgrades it in place, and what it lacks needs the photos read again."""
    if found < FACES_TABLE_VERSION:
        return (f"{db} has schema version {found}, from before faces; bring it up to date (its labels are kept): "
                f"imgidx index FOLDER --db {db}, with --reindex to find faces too")
    if found < OBJECTS_VERSION:
        return (f"{db} has schema version {found}, from before objects; bring it up to date (its labels and faces "
                f"are kept): imgidx index FOLDER --db {db}, with --objects --reindex to find objects too")
    if found < TAKEN_VERSION:
        return (f"{db} has schema version {found}, from before photo dates; bring it up to date (its labels are "
                f"kept, and the dates are read from the photos' headers without the model): imgidx index FOLDER "
                f"--db {db}")
    if found < TEXT_VERSION:
        return (f"{db} has schema version {found}, from before text; bring it up to date (its labels and boxes are "
                f"kept): imgidx index FOLDER --db {db}, with --text --reindex to read text too")
    return (f"{db} has schema version {found}; bring it up to date (it gains indexes for faster queries, and "
            f"nothing is read again): imgidx index FOLDER --db {db}")


#: The settings an upgrade records 'off' where the index has none: what its images were never searched for.
DETECTOR_KEYS = ("faces", "objects", "text")
#: The first schema version with the text tables (`_upgrade`).
TEXT_VERSION = 6
#: The first with the indexes a query of one term reads (`query.compile`): its upgrade only makes them.
ONE_TERM_VERSION = 7
#: The first with each class's runs (`indexer.store.runs`): its upgrade makes them from the rows.
RUNS_VERSION = 10


def _upgrade(conn: sa.Connection, found: int) -> None:
    """Bring an index of schema version ``found`` up to this one, in the caller's transaction.

    Version 3 -> 4 turns the faces table into the boxes table (each face a box of `labels.FACE_CLASS`, its
    number and numbers kept) and adds the object classes; its face labels stay as they are, and its images
    were never searched for objects, so its settings say objects 'off' (finding them means reading every
    photo again: ``--objects --reindex``). Version 2 -> 4 adds the boxes table and the face and object
    classes and keeps every label: its images were labelled without faces or objects, so both are 'off'.
    A run that wants a detector an index was built without needs ``--reindex``, as for any other setting.
    Version 1: its scores were mean probabilities with no calibration, which cannot be turned into evidence.
    Files stay (paths, hashes, failures); every label goes and every image is due, so the ``--reindex`` run
    that asked for this relabels them.
    Every upgrade adds the classes and class ancestors this imgidx knows and the index lacks
    (`labels.all_classes`, `labels.ancestors`). Version 4 -> 5: `_add_taken_columns`; 5 -> 6: `_upgrade_to_text`;
    6 -> 7: the indexes ``images_unlabelled`` and ``image_labels_class_image`` (schema.sql's statements make
    them), which replaces ``image_labels_class``; 7 -> 8: the index ``cell_labels_image_class``, made so too;
    8 -> 9: the index ``image_labels_class_by_image``, made so too; 9 -> 10: the table ``class_runs``, made so
    too and filled from the label rows (`indexer.store.runs.rebuild`: a minute or more at a million photos).
    """
    if found < TAKEN_VERSION:
        _add_taken_columns(conn)  # before the statements below, whose index on taken_at needs the column
    for statement in schema_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)  # CREATE ... IF NOT EXISTS: only the tables and indexes missing
    t = tables(conn)
    known = set(conn.execute(sa.select(t.classes.c.class_id)).scalars())
    missing = [_class_row(c) for c in labels.all_classes() if c.index not in known]
    if missing:
        conn.execute(t.classes.insert(), missing)
    pairs = sa.select(t.class_ancestors.c.class_id, t.class_ancestors.c.ancestor_wnid)
    known_pairs = {tuple(row) for row in conn.execute(pairs)}
    missing = [row for row in _ancestor_rows() if (row["class_id"], row["ancestor_wnid"]) not in known_pairs]
    if missing:
        conn.execute(t.class_ancestors.insert(), missing)
    if "faces" in sa.inspect(conn).get_table_names():  # version 3: its faces become boxes
        columns = ", ".join(c for c in BOX_COLUMNS if c not in ("box", "class_id"))
        conn.execute(sa.text(
            f"INSERT INTO boxes (image_id, box, class_id, {columns}) "
            f"SELECT image_id, face, :face, {columns} FROM faces"
        ), {"face": labels.FACE_CLASS})
        conn.exec_driver_sql("DROP TABLE faces")
        _rescore_faces(conn, t)
    if found < LABELS_KEPT_FROM:
        mark_all_stale(conn, t, drop_labels=True)
        conn.execute(t.meta.delete().where(t.meta.c.key.in_(SETTING_KEYS)))
    else:
        meta = read_meta(conn)
        if all(key in meta for key in SETTING_KEYS if key not in DETECTOR_KEYS):
            off = [{"key": key, "value": DETECTOR_OFF} for key in DETECTOR_KEYS if key not in meta]
            if off:
                conn.execute(t.meta.insert(), off)
        _record_box_calibration(conn, t, meta)
    if found < TEXT_VERSION:
        _upgrade_to_text(conn, t)
    if found < ONE_TERM_VERSION:
        conn.exec_driver_sql("DROP INDEX IF EXISTS image_labels_class")  # image_labels_class_image covers it
    if found < RUNS_VERSION:
        runs.rebuild(conn, t)
    conn.execute(t.meta.update().where(t.meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def _add_taken_columns(conn: sa.Connection) -> None:
    """Version 4 -> 5: the ``images`` columns of when a photo was taken (`TAKEN_COLUMNS`), empty: every
    labelled photo is then undated, and the next ``index`` run reads the dates from the photos' headers
    (`indexer.plan.Plan.undated`) without running the model. The index on them follows from schema.sql."""
    present = {column["name"] for column in sa.inspect(conn).get_columns("images")}
    images = declared_tables().images
    for name in TAKEN_COLUMNS:
        if name not in present:
            kind = images.c[name].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE images ADD COLUMN {name} {kind}")


def _upgrade_to_text(conn: sa.Connection, t: Tables) -> None:
    """Version 5 -> 6: the texts and text_words tables (made above by schema.sql's statements) and meta 'text'
    'off' where the index has settings: its images were never read for text (reading them means reading every
    photo again: ``--text --reindex``). Labels, boxes and files are kept."""
    meta = read_meta(conn)
    if "model" in meta and "text" not in meta:
        conn.execute(t.meta.insert(), [{"key": "text", "value": DETECTOR_OFF}])


def _rescore_faces(conn: sa.Connection, t: Tables) -> None:
    """The face label's rows made again from the kept face boxes by today's rule (`boxes.cell_scores`), so an
    upgraded index reads its faces as a new one would (version 3 spread a face over cells by its share)."""
    from indexer import regions  # numpy: a writing open only

    faces = conn.execute(
        sa.select(t.boxes.c.image_id, t.images.c.width, t.images.c.height, *(t.boxes.c[c] for c in BOX_COLUMNS[1:]))
        .join(t.images, t.images.c.image_id == t.boxes.c.image_id)
        .where(t.boxes.c.class_id == labels.FACE_CLASS)
        .order_by(t.boxes.c.image_id, t.boxes.c.box)
    ).all()
    by_image: dict[int, tuple[int, int, list[Box]]] = {}
    for image_id, width, height, *box in faces:
        by_image.setdefault(image_id, (width, height, []))[2].append(Box(*box))
    for column in (t.cell_labels.c, t.image_labels.c):
        table = column.image_id.table
        conn.execute(table.delete().where(column.class_id == labels.FACE_CLASS))
    cell_rows, image_rows = [], []
    for image_id, (width, height, found) in by_image.items():
        scored = regions.with_boxes(regions.Regions([], []), found, width, height)
        cell_rows += [{"image_id": image_id, **label._asdict()} for label in scored.cell_labels]
        image_rows += [{"image_id": image_id, **label._asdict()} for label in scored.image_labels]
    if cell_rows:
        conn.execute(t.cell_labels.insert(), cell_rows)
    if image_rows:
        conn.execute(t.image_labels.insert(), image_rows)


def _record_box_calibration(conn: sa.Connection, t: Tables, meta: dict[str, str]) -> None:
    """An upgraded index whose classifier calibration is this imgidx's records the boxes' too
    (`calibration.index_version`): its face rows are scored by today's rule (`_rescore_faces`), and it has no
    object rows."""
    model, version = meta.get("model"), meta.get("calibration")
    if model and version == calibration.for_model(model).version:
        conn.execute(t.meta.update().where(t.meta.c.key == "calibration")
                     .values(value=calibration.index_version(version)))


# --- A damaged index: a table or column gone, values the schema rules out, a corrupt file ---

#: What the drivers say when a statement meets a damaged index, and what the user reads: SQLite's messages
#: (by their start, or its error name) and PostgreSQL's SQLSTATEs.
SQLITE_DAMAGE = {"no such table: ": "a table is missing", "no such column: ": "a column is missing"}
SQLITE_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
PG_DAMAGE = {"42P01": "a table is missing", "42703": "a column is missing"}
PG_CORRUPT = ("XX001", "XX002")


def _damage(exc: BaseException) -> tuple[str, bool] | None:
    """What a driver's error says is damaged in the index (and whether ``--reindex`` mends it), or None
    for any other error."""
    text = " ".join(str(exc).split())
    if isinstance(exc, sqlite3.Error):
        if getattr(exc, "sqlite_errorname", None) in SQLITE_CORRUPT:
            return f"its file is corrupt ({text})", False
        for start, what in SQLITE_DAMAGE.items():
            if text.startswith(start):
                return f"{what} ({text})", True
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in PG_DAMAGE:
        return f"{PG_DAMAGE[sqlstate]} ({text.split(' LINE ')[0]})", True
    if sqlstate in PG_CORRUPT:
        return f"its data is corrupt ({text})", False
    return None


def _report_damage(engine: Engine, db: str) -> None:
    """Make a statement that meets a damaged index (a table dropped since it was opened, say) raise
    `damaged` instead of the driver's error with its SQL: for every command at once, reading or writing."""

    def on_error(context: sa.engine.ExceptionContext):
        found = _damage(context.original_exception)
        if found is not None:
            return damaged(db, *found)
        return None

    sa.event.listen(engine, "handle_error", on_error)


def _check_tables(conn: sa.Connection, db: str, existing: set[str], upgrade: bool, repair: bool) -> None:
    """Refuse an index that lacks one of `TABLE_NAMES`, unless ``upgrade`` (an ``index --reindex`` run, whose
    writing open will ``repair`` it: `_repair`). Only names are compared, those the opening found
    (``existing``): no query more for a whole index."""
    missing = [name for name in TABLE_NAMES if name not in existing]
    if missing:  # or did the version's upgrade just make them?
        now = set(sa.inspect(conn).get_table_names())
        missing = [name for name in missing if name not in now]
    if repair:
        _repair(conn, missing)
    elif missing and not upgrade:
        count = f"its table {missing[0]} is" if len(missing) == 1 else f"its tables {', '.join(missing)} are"
        raise damaged(db, f"{count} missing")


def _repair(conn: sa.Connection, missing: list[str]) -> None:
    """Make a damaged index whole for the ``--reindex`` run that asked, which relabels every image anyway.

    Tables that are missing or lack a declared column are made again, empty, and with them the tables of
    labels (those referring to ``images``: their rows are dropped either way) and every table referring to
    one remade (so that no row points into an empty table); the classes are filled again if theirs were
    remade, and every image is made due. Values the schema rules out, which only labels hold, go with them.
    """
    inspector = sa.inspect(conn)
    declared = declared_tables()
    broken = set(missing)
    for name in TABLE_NAMES:
        if name not in broken and name != "meta":
            found = {column["name"] for column in inspector.get_columns(name)}
            if set(getattr(declared, name).columns.keys()) - found:
                broken.add(name)
    if not broken:
        return
    refers = {name: {key.column.table.name for key in getattr(declared, name).foreign_keys} for name in TABLE_NAMES}
    remade = broken | {name for name in TABLE_NAMES if "images" in refers[name]}
    while more := {name for name in TABLE_NAMES if refers[name] & remade} - remade:
        remade |= more
    for name in reversed(TABLE_NAMES):  # schema.sql's order: a table after those it refers to
        if name in remade and name not in missing:
            conn.exec_driver_sql(f"DROP TABLE {name}")
    for statement in schema_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)  # CREATE ... IF NOT EXISTS: only the tables (and indexes) remade
    t = tables(conn)
    if remade & {"classes", "class_ancestors"}:
        conn.execute(t.class_ancestors.delete())
        conn.execute(t.classes.delete())
        _fill_classes(conn, t)
    mark_all_stale(conn, t, drop_labels=True)


def _fill_classes(conn: sa.Connection, t: Tables) -> None:
    """Every class (`labels.all_classes`: ImageNet's, the face, the detector's), with its WordNet ancestors."""
    conn.execute(t.classes.insert(), [_class_row(c) for c in labels.all_classes()])
    conn.execute(t.class_ancestors.insert(), _ancestor_rows())
