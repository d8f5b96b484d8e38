"""What a run does before reading a byte: its settings, and the diff of the walk against the index.

Its own module because deciding is apart from doing: the settings a run asks for (`RunRequest`) against the
index's own (`choose_settings`), then which files to read, which to leave unread, which image names to record
as skipped, which content the index labelled already (moves and copies) and which rows to prune (`Plan`).
Both engines read the files this plan gives them and consult it for content they find known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Iterable

import sqlalchemy as sa

from indexer import store
from indexer import runtime as runtimes
from indexer.errors import IndexSettingsError
from indexer.models import DEFAULT_MODEL, DEFAULT_WORKING_SIZE
from indexer.run_types import Read, Summary, Task
from indexer.store import FileRecord, FileRow, IndexSettings
from indexer.taken import with_fallback
from indexer.walk import FoundFile, Walk

DB_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".lock")
#: A new index looks for faces unless told not to (``imgidx index --no-faces``).
DEFAULT_FACES = True
#: A new index looks for objects unless told not to (``imgidx index --no-objects``).
DEFAULT_OBJECTS = True


# --- Settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """The settings a run asks for. Unset ``model``/``size``/``faces``/``objects`` and ``precision``/``runtime``
    ``"auto"`` mean: keep the index's own (or the defaults for a new index); ``reindex`` allows other ones."""

    model: str | None = None
    size: int | None = None
    precision: str = "auto"
    runtime: str = "auto"
    faces: bool | None = None
    objects: bool | None = None
    reindex: bool = False


def choose_settings(stored: IndexSettings | None, request: RunRequest) -> tuple[IndexSettings, bool]:
    """The settings of this run and whether every stored image must be redone.

    What ``request`` leaves open comes from the index (`indexer.runtime.choose` for runtime and precision), or
    the defaults for a new index. Asking for other settings than the index holds raises `IndexSettingsError`
    unless ``request.reindex``.
    """
    model = request.model or (stored.model if stored else DEFAULT_MODEL)
    size = request.size or (stored.working_size if stored else DEFAULT_WORKING_SIZE)
    runtime, precision, quantization = runtimes.choose(
        stored, model, size, request.runtime, request.precision, request.reindex
    )
    with_faces = request.faces
    if with_faces is None:
        with_faces = stored.faces if stored else DEFAULT_FACES
    with_objects = request.objects
    if with_objects is None:
        with_objects = stored.objects if stored else DEFAULT_OBJECTS
    chosen = IndexSettings(model, size, precision, faces=with_faces, runtime=runtime, quantization=quantization,
                           objects=with_objects)
    if stored is None:
        return chosen, request.reindex
    if chosen != stored and not request.reindex:
        calibrated = stored.describe() == chosen.describe() and stored.calibration != chosen.calibration
        faces_differ = stored.faces != chosen.faces
        objects_differ = stored.objects != chosen.objects
        runtime_differs = stored.runtime != chosen.runtime
        raise IndexSettingsError(
            f"the index holds labels from {stored.describe(calibrated, faces_differ, objects_differ)}, not "
            f"{chosen.describe(calibrated, faces_differ, objects_differ)}; pass --reindex to rebuild it, or leave "
            f"out --model/--size/--precision{'/--runtime' * runtime_differs}{'/--faces/--no-faces' * faces_differ}"
            f"{'/--objects/--no-objects' * objects_differ} to keep its settings"
        )
    return chosen, request.reindex


# --- The diff -----------------------------------------------------------------------------------------


def database_files(engine: sa.Engine) -> set[str]:
    """The database file and its journal, WAL and lock companions, which a walk must not index."""
    path = store.sqlite_path(str(engine.url))
    if path is None:
        return set()
    real = os.path.realpath(path)
    return {real + suffix for suffix in DB_SIDE_SUFFIXES}


def unchanged(record: FileRecord, found: FoundFile) -> bool:
    """The file has the size and modification time the index holds for it (the diff's own test)."""
    return (record.size_bytes, record.mtime_ns) == (found.size_bytes, found.mtime_ns)


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


@dataclass(frozen=True)
class Skip:
    """An image name that is no file to read. ``still``: the index holds it so already, unchanged, and
    ``row`` (its record, with the reason) needs no storing."""

    row: FileRow
    reason: str
    still: bool


class Plan:
    """The diff of one run: the files to read (``tasks``), the names to record as skipped (``skips``), the
    rows whose files are gone (``missing``), and the content the index labelled with the current settings
    (``known``), which a file read may turn out to hold (`reuse`). Counts what it decides in ``summary``."""

    def __init__(self, settings: IndexSettings, redo_all: bool, roots: list[str], summary: Summary):
        self.settings = settings
        self.redo_all = redo_all
        self.roots = roots
        self.summary = summary
        self.tasks: list[Task] = []
        self.skips: list[Skip] = []
        self.missing: list[FileRecord] = []
        self.known: dict[str, FileRecord] = {}
        self.moved_ids: set[int] = set()
        #: Unchanged files labelled before the index stored dates: only their headers are read (`Run.date`).
        self.undated: list[tuple[FileRecord, FoundFile]] = []

    def current(self, record: FileRecord) -> bool:
        return not self.redo_all and record.is_current(self.settings)

    def make(self, found: Walk, records: list[FileRecord]) -> None:
        """Diff the walk against the index's rows."""
        by_path = {r.path: r for r in records}
        for f in found.files:
            record = by_path.get(f.path)
            if record and unchanged(record, f) and self.current(record):
                self.summary.unchanged += 1
                if record.undated:
                    self.undated.append((record, f))
            else:
                self.tasks.append(Task(f, record))
        in_question = {t.found.path for t in self.tasks}
        self.known = {
            r.content_hash: r for r in records if self.current(r) and r.content_hash and r.path not in in_question
        }
        seen = {f.path for f in found.files} | {f.path for f, _ in found.skipped}
        unreadable = [path for path, _ in found.unreadable]
        self.missing = [
            r for r in records if r.path not in seen and _under(r.path, self.roots) and not _under(r.path, unreadable)
        ]
        if self.redo_all:
            self.summary.stale_elsewhere = sum(
                1 for r in records if r.error is None and not _under(r.path, self.roots)
            )
        for f, reason in found.skipped:
            row = FileRow(f.path, f.size_bytes, f.mtime_ns, None, error=store.SKIPPED_PREFIX + reason)
            record = by_path.get(f.path)
            still = record is not None and record.error == row.error and unchanged(record, f)
            if still:
                self.summary.still_failing += 1
            else:
                self.summary.skipped += 1
            self.skips.append(Skip(row, reason, still))

    def known_source(self, task: Task, digest: str) -> FileRecord | None:
        """The row already holding labels of this content: the file's own (merely touched), or another's."""
        record = task.record
        touched = record is not None and record.content_hash == digest and self.current(record)
        return record if touched else self.known.get(digest)

    def reuse(self, read: Read) -> FileRow | None:
        """Content the index already labelled (``read.source``): touched in place or moved, so that row
        follows the file (None); or copied, into the row returned."""
        found, record, source = read.task.found, read.task.record, read.source
        if record is not None and record.image_id == source.image_id:
            self.summary.unchanged += 1
            return None
        if record is None and source.image_id not in self.moved_ids and not os.path.lexists(source.path):
            self.moved_ids.add(source.image_id)
            self.known[read.content_hash] = replace(source, path=found.path)
            self.summary.moved += 1
            return None
        self.summary.copied += 1
        return FileRow(
            found.path, found.size_bytes, found.mtime_ns, read.content_hash,
            model=source.model, working_size=source.working_size,
            **store.taken_fields(with_fallback(read.taken, found.mtime_ns)),
        )

    def gone(self) -> list[int]:
        """The rows of files gone from the walked roots, less those a moved file took over."""
        return [r.image_id for r in self.missing if r.image_id not in self.moved_ids]
