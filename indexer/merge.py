"""Merge indexes built separately (per disk, per machine) into one.

Every source is checked before anything is written: it must be an index of this schema version, and all
sources and a non-empty destination must hold labels computed with the same settings (model, working size,
precision), since one index never mixes two. Then each source's images are copied with their labels in
chunks ordered by image id, each chunk in its own transaction: an interrupted merge keeps what it committed
and running it again finishes it, and a merge run twice gives the same index as run once.

**Conflicts.** When several indexes hold the same path, the row with the latest ``indexed_at`` wins, whatever
it holds: a newer failure (the file was unreadable then) beats older labels, because the index records the
latest that was known about the file, as a re-index would. Ties go to the destination's own row, then to the
later source on the command line. This is why sources are copied last one first, each replacing only rows
strictly older than its own: the first writer of a tie is the one that keeps it, and a second run finds every
row as new as its source's and writes nothing. Stale rows (labels due for re-indexing) are copied as they are.

No printing here: progress goes out as events to ``on_event``.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

import sqlalchemy as sa

from indexer import calibration, store
from indexer.errors import MergeError, StoreError
from indexer.labels import COMPOUND_BASE
from indexer.locking import writer_lock
from indexer.store import FileRow, IndexSettings
from indexer.writer import derive_compounds
from query.compounds import COMPOUNDS_KEY, Compounds, compounds

#: Images per transaction: bounds memory (with their labels) and the work an interruption loses.
CHUNK = 500
#: Values per ``IN (...)`` (SQLite's old limit is 999 variables).
IN_CHUNK = store.IN_CHUNK
LABEL_COLUMNS = {
    "image_labels": ("class_id", "score", "share"),
    "cell_labels": ("cell", "class_id", "score", "coverage"),
    "boxes": store.BOX_COLUMNS,
    "texts": store.TEXT_COLUMNS,
    "text_words": store.WORD_COLUMNS,
}


@dataclass(frozen=True)
class SourceStarted:
    """Copying from ``source`` begins; it holds ``images`` rows."""

    source: str
    images: int


@dataclass(frozen=True)
class Progress:
    """``done`` of the ``images`` rows of ``source`` are committed (copied or found not newer)."""

    source: str
    done: int
    images: int


Event = SourceStarted | Progress


@dataclass
class SourceCounts:
    """What one source contributed: rows ``added`` (new paths), ``replaced`` (older rows), ``skipped``
    (the destination's row was as new or newer), and ``failed`` (failed-file rows among those written)."""

    source: str
    images: int = 0
    added: int = 0
    replaced: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class MergeSummary:
    """What one merge did, per source in command-line order."""

    into: str
    settings: IndexSettings | None
    sources: list[SourceCounts] = field(default_factory=list)
    elapsed: float = 0.0

    def total(self, name: str) -> int:
        return sum(getattr(counts, name) for counts in self.sources)


def merge(
    sources: list[str],
    into: str,
    on_event: Callable[[Event], None] | None = None,
    *,
    chunk: int = CHUNK,
) -> MergeSummary:
    """Copy the images of ``sources`` (URLs or paths) into ``into``, which is created if missing.

    Raises `MergeError` for an index merged into itself or mismatched settings, `StoreError` (or its
    `SchemaVersionError`) for a source that is missing, not an index, or of another schema version; all
    before anything is written. See the module docstring for the conflict rule.
    """
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    if not sources:
        raise MergeError("no source index to merge")
    for source in sources:
        if _same_index(source, into):
            raise MergeError(f"cannot merge {store.shown(source)} into itself")
    engines: list[sa.Engine] = []  # the sources', then the destination's
    try:
        settings = settings_from = None
        for source in sources:
            engines.append(store.open_index(source, create=False, readonly=True))
            with engines[-1].connect() as conn:
                found = store.read_settings(conn)
            if found is None:
                continue
            if settings is None:
                settings, settings_from = found, store.shown(source)
            elif found != settings:
                raise _mismatch(store.shown(source), found, settings_from, settings)
        # Only now may the destination be created: nothing after this refuses an empty one.
        target = store.open_index(into, create=True)
        engines.append(target)
        with writer_lock(target):
            with target.connect() as conn:
                target_settings = store.read_settings(conn)
                target_empty = conn.execute(sa.text("SELECT COUNT(*) FROM images")).scalar_one() == 0
            if settings is not None and target_settings not in (None, settings) and not target_empty:
                raise _mismatch(settings_from, settings, store.shown(into), target_settings)
            summary = MergeSummary(store.shown(into), settings or target_settings)
            summary.sources = [SourceCounts(store.shown(source)) for source in sources]
            t = store.tables(target)
            if settings is not None and target_settings != settings:  # none yet, or an empty index's
                with _errors(f"writing the settings of {summary.into}"), target.begin() as conn:
                    _check_settings(conn, t, settings, summary.into, exclusive=True)
                    store.write_settings(conn, t, settings)
            derived = None if settings is None else _compounds_of(target, t, settings, summary.into)
            for engine, counts in reversed(list(zip(engines, summary.sources))):
                with _errors(f"merging {counts.source} into {summary.into}"):
                    _copy(engine, target, t, counts, emit, chunk, settings, summary.into, derived)
    finally:
        for engine in engines:
            engine.dispose()
    summary.elapsed = time.perf_counter() - started
    return summary


def _compounds_of(target: sa.Engine, t: store.Tables, settings: IndexSettings, into: str) -> Compounds:
    """The compounds (`query.compounds`) each copied image gets, derived from its labels rather than copied (a
    source may hold other compounds, or none); the destination keeps saying it holds them only if it did, or
    held no labels (else its next `imgidx index` derives them for every image)."""
    held = compounds(settings.objects, settings.calibration)
    with _errors(f"writing the compounds of {into}"), target.begin() as conn:
        store.add_classes(conn, t, held.class_rows())
        fresh = store.read_meta(conn).get(COMPOUNDS_KEY) == held.digest or not store.has_labels(conn, t)
        store.write_meta(conn, t, COMPOUNDS_KEY, held.digest if fresh else None)
    return held


def _check_settings(
    conn: sa.Connection, t: store.Tables, settings: IndexSettings | None, into: str, exclusive: bool = False
) -> None:
    """Lock the destination's settings for this transaction; stop if another writer stored others meanwhile.

    Only PostgreSQL takes other writers during a merge (an SQLite destination is under `writer_lock`).
    """
    current = store.read_settings_locked(conn, t, exclusive=exclusive)
    if settings is None or current in (None, settings):
        return
    if exclusive and conn.execute(sa.select(sa.func.count()).select_from(t.images)).scalar_one() == 0:
        return  # an empty index's settings are replaced
    raise MergeError(
        f"another imgidx index stored labels from {current.describe()} in {into} meanwhile, not "
        f"{settings.describe()}; the merge stopped rather than mix them"
    )


def _mismatch(source: str, found: IndexSettings, other: str, expected: IndexSettings) -> MergeError:
    calibrated = found.describe() == expected.describe() and found.calibration != expected.calibration
    differ = (calibrated, found.faces != expected.faces, found.objects != expected.objects, found.text != expected.text)
    return MergeError(
        f"cannot merge {source}: it holds labels from {found.describe(*differ)}, but {other} "
        f"from {expected.describe(*differ)}; indexes built with other settings cannot be merged"
    )


def _same_index(a: str, b: str) -> bool:
    """The same database: the same URL, or SQLite files that are one file (however the paths spell it)."""
    try:
        url_a, url_b = store.parse_url(a), store.parse_url(b)
    except StoreError:
        return False  # not a URL: open_index says so
    path_a, path_b = store.sqlite_path(url_a), store.sqlite_path(url_b)
    if path_a is not None and path_b is not None:
        if path_a.exists() and path_b.exists():
            return os.path.samefile(path_a, path_b)
        return path_a.resolve() == path_b.resolve()
    return _server_database(url_a) == _server_database(url_b)


def _server_database(url: sa.engine.URL) -> tuple:
    """What names one database whatever the driver or user: ``postgresql://`` is ``postgresql+psycopg://``."""
    return url.get_backend_name(), (url.host or "").lower(), url.port, url.database


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    """A database error while copying becomes one line saying that a re-run finishes the merge."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise StoreError(
            f"{doing} failed: {store.error_reason(exc)}; what was committed is kept, run the same command again "
            "to finish"
        ) from None


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _newer(a: str, b: str) -> bool:
    """``a`` is strictly later than ``b`` (ISO 8601 times; compared as text if one does not parse)."""
    moment_a, moment_b = _moment(a), _moment(b)
    if moment_a is None or moment_b is None:
        return a > b
    return moment_a > moment_b


def _copy(
    source: sa.Engine, target: sa.Engine, t: store.Tables, counts: SourceCounts, emit, chunk: int,
    settings: IndexSettings | None, into: str, derived: Compounds | None = None,
) -> None:
    """Copy one source, ``chunk`` images per destination transaction, paging through it by image id; with
    ``derived``, each copied image's compounds are derived in the destination."""
    fields = list(FileRow.__dataclass_fields__)
    with source.connect() as read:
        s = store.tables(read)
        images = s.images
        counts.images = read.execute(sa.select(sa.func.count()).select_from(images)).scalar_one()
        emit(SourceStarted(counts.source, counts.images))
        done, last_id = 0, None
        columns = [images.c.image_id, images.c.indexed_at, *(images.c[name] for name in fields)]
        while True:
            query = sa.select(*columns).order_by(images.c.image_id).limit(chunk)
            if last_id is not None:
                query = query.where(images.c.image_id > last_id)
            batch = read.execute(query).all()
            if not batch:
                break
            last_id = batch[-1].image_id
            with target.begin() as conn:
                _check_settings(conn, t, settings, into)
                existing = {}
                for paths in _pieces([row.path for row in batch]):
                    held = sa.select(t.images.c.path, t.images.c.indexed_at).where(t.images.c.path.in_(paths))
                    existing.update(conn.execute(held).all())
                winners = []
                for row in batch:
                    held = existing.get(row.path)
                    if held is not None and not _newer(row.indexed_at, held):
                        counts.skipped += 1
                        continue
                    if held is None:
                        counts.added += 1
                    else:
                        counts.replaced += 1
                    counts.failed += row.error is not None
                    winners.append(row)
                if winners:
                    file_rows = [FileRow(**{name: row._mapping[name] for name in fields}) for row in winners]
                    new_ids = store.upsert_images(conn, t, file_rows, [row.indexed_at for row in winners])
                    _copy_labels(read, s, conn, t, dict(zip((row.image_id for row in winners), new_ids)))
                    if derived is not None:
                        derive_compounds(conn, t, new_ids, derived, calibration.for_model(settings.model))
            done += len(batch)
            emit(Progress(counts.source, done, counts.images))


def _copy_labels(read: sa.Connection, s: store.Tables, conn: sa.Connection, t: store.Tables, ids: dict[int, int]):
    """Insert the source labels of the images ``ids`` maps (source id to destination id) under their new ids."""
    for name, columns in LABEL_COLUMNS.items():
        source_table, target_table = getattr(s, name), getattr(t, name)
        rows = []
        for source_ids in _pieces(list(ids)):
            select = sa.select(source_table.c.image_id, *(source_table.c[c] for c in columns))
            select = select.where(source_table.c.image_id.in_(source_ids))
            if "class_id" in columns:  # compounds are derived in the destination (`_compounds_of`)
                select = select.where(source_table.c.class_id < COMPOUND_BASE)
            rows += read.execute(select).all()
        if rows:
            conn.execute(
                target_table.insert(),
                [{"image_id": ids[row[0]], **dict(zip(columns, row[1:]))} for row in rows],
            )
    store.record_runs(conn, list(ids.values()))


def _pieces(items: list) -> Iterator[list]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]
