"""The run's writes: changes gathered into transactions, scored and committed on a thread of their own.

Its own module because storing is apart from reading and inferring: the loop (`indexer.pipeline`, or the Ray
engine's) hands over failures, moves, copies and model batches, and the writer thread turns a batch's views
into region scores, waits for its boxes and commits it, so the model never waits on SQLite. The first
transaction with labels stores the run's settings (a reindex's reset with them), and the last one prunes.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import sqlalchemy as sa

from indexer import calibration, regions, store
from indexer.errors import IndexSettingsError, StoreError
from indexer.labels import FACE_CLASS, is_compound
from indexer.run_types import Event, Progress, Read, Summary
from indexer.store import FileRow, IndexSettings
from indexer.taken import Taken, with_fallback
from indexer.walk import FoundFile
from query.compounds import COMPOUNDS_KEY, Compounds, compounds

#: Images whose compound rows are derived again in one transaction (`Writer.refresh_compounds`).
COMPOUND_CHUNK = 500

#: Transactions queued for the writer thread before the model waits for it.
MAX_QUEUED_COMMITS = 2


@contextmanager
def _store_errors(engine: sa.Engine) -> Iterator[None]:
    """A database that cannot be written (locked, disk full, read-only) is a `StoreError`, not a crash."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        where = store.shown_engine(engine)
        raise StoreError(f"cannot write to the index {where}: {store.error_reason(exc)}") from None


@dataclass
class _Commit:
    """One transaction's worth of changes; ``scored`` are model batches whose views are still to be scored."""

    saves: list[tuple[FileRow, regions.Regions | None]]
    copies: list[tuple[FileRow, int]]
    updates: list[tuple[int, str, int, int, Taken]]
    scored: list[tuple[list[Read], list[regions.View]]]
    gone: list[int]
    first: bool
    #: Dates read for photos labelled before the index stored them (None: not readable now, left undated).
    dates: list[tuple[int, Taken | None]]

    @property
    def files(self) -> int:
        return (len(self.saves) + len(self.copies) + len(self.updates) + len(self.dates)
                + sum(len(g) for g, _ in self.scored))


def derive_compounds(conn: sa.Connection, t: store.Tables, image_ids: list[int], held: Compounds,
                     cal: calibration.Calibration) -> None:
    """Replace the compound rows of ``image_ids`` by those their stored label rows give (no model runs)."""
    image_rows, cell_rows = [], []
    for image_id, rows in store.model_label_rows(conn, t, image_ids).items():
        images, cells = held.derive(rows, cal)
        image_rows += [{"image_id": image_id, "class_id": c, "score": value, "share": 0.0} for c, value in images]
        cell_rows += [{"image_id": image_id, "cell": cell, "class_id": c, "score": value, "coverage": 0.0}
                      for cell, c, value in cells]
    store.replace_compound_rows(conn, t, image_ids, image_rows, cell_rows)


def refresh_compounds(engine: sa.Engine, t: store.Tables, held: Compounds, cal: calibration.Calibration,
                      on_chunk: Callable[[int, int], None] | None = None) -> int:
    """Derive every labelled image's compound rows again from its stored labels (an index from before
    compounds, or of other ones), `COMPOUND_CHUNK` images per transaction, then record them in meta, so that
    queries read them; ``on_chunk(done, total)`` after each chunk. Returns how many images it derived."""
    store.transaction(engine, lambda conn: store.add_classes(conn, t, held.class_rows()))
    with engine.connect() as conn:
        ids = store.labelled_ids(conn, t)
    for start in range(0, len(ids), COMPOUND_CHUNK):
        chunk = ids[start : start + COMPOUND_CHUNK]
        store.transaction(engine, lambda conn: derive_compounds(conn, t, chunk, held, cal))
        if on_chunk is not None:
            on_chunk(min(start + COMPOUND_CHUNK, len(ids)), len(ids))
    store.transaction(engine, lambda conn: store.write_meta(conn, t, COMPOUNDS_KEY, held.digest))
    return len(ids)


class Writer:
    """One run's pending changes and its writer thread (`running`); reports `Progress` of ``todo`` files as
    commits finish, and counts its time and the boxes it stores in ``summary``."""

    def __init__(self, engine: sa.Engine, settings: IndexSettings, redo_all: bool, summary: Summary,
                 emit: Callable[[Event], None]):
        self.engine = engine
        self.t = store.tables(engine)
        self.settings = settings
        self.redo_all = redo_all
        self.summary = summary
        self.emit = emit
        self.calibration = calibration.for_model(settings.model)
        self.compounds = compounds(settings.objects, settings.calibration)
        #: The index held labels without this code's compound rows: derived for every image at the end.
        self.compounds_stale = False
        self.settings_pending = True
        #: Model results are waiting for the next commit (the first such commit also stores the settings).
        self.labelled_pending = False
        self.thread: ThreadPoolExecutor | None = None
        self.writes: deque[Future] = deque()
        self.write_failed = False
        self.scored: list[tuple[list[Read], list[regions.View]]] = []
        self.saves: list[tuple[FileRow, regions.Regions | None]] = []
        self.copies: list[tuple[FileRow, int]] = []
        self.updates: list[tuple[int, str, int, int, Taken]] = []
        self.dates: list[tuple[int, Taken | None]] = []
        self.done = 0
        self.todo = 0

    # -- what the loop hands over

    def save(self, row: FileRow, scores: regions.Regions | None = None) -> None:
        """A row to store as it is: failed or skipped (no ``scores``), or labelled elsewhere (the Ray engine)."""
        self.saves.append((row, scores))

    def update(self, image_id: int, found: FoundFile, taken: Taken | None) -> None:
        """A row whose labels now belong to ``found`` (touched in place, or moved there), with the EXIF date
        read from it now (``taken``; the file's time where it has none)."""
        taken = with_fallback(taken, found.mtime_ns)
        self.updates.append((image_id, found.path, found.size_bytes, found.mtime_ns, taken))

    def dated(self, image_id: int, taken: Taken | None) -> None:
        """The date read for a row labelled before the index stored dates (None: unreadable, left undated)."""
        self.dates.append((image_id, taken))

    def copy(self, row: FileRow, source_id: int) -> None:
        self.copies.append((row, source_id))

    def labelled(self, read: Read, scores: regions.Regions) -> None:
        """A photo scored elsewhere (on a Ray actor), with its boxes."""
        self.save(self.labelled_row(read), scores)
        self.count_boxes(scores)
        self.labelled_pending = True

    def inferred(self, group: list[Read], seen: list[regions.View]) -> None:
        """A model batch, to be scored on the writer thread."""
        self.scored.append((group, seen))
        self.labelled_pending = True

    @property
    def pending(self) -> int:
        """Failures, moves, copies and dates waiting for the next commit."""
        return len(self.saves) + len(self.copies) + len(self.updates) + len(self.dates)

    def labelled_row(self, read: Read) -> FileRow:
        """The ``images`` row of a file the model has just labelled."""
        found = read.task.found
        return FileRow(
            found.path, found.size_bytes, found.mtime_ns, read.content_hash, read.width, read.height,
            self.settings.model, self.settings.working_size,
            **store.taken_fields(with_fallback(read.taken, found.mtime_ns)),
        )

    def count_boxes(self, scores: regions.Regions) -> None:
        """Count the faces and objects a photo stores (`Summary.faces_found`, `Summary.objects_found`)."""
        faces_found = sum(box.class_id == FACE_CLASS for box in scores.boxes)
        self.summary.faces_found += faces_found
        self.summary.objects_found += len(scores.boxes) - faces_found
        self.summary.lines_found += len(scores.texts)

    # -- commits

    @contextmanager
    def running(self) -> Iterator[None]:
        """The writer thread, for the span of the run; leaving waits for the transactions handed to it."""
        with ThreadPoolExecutor(1, thread_name_prefix="imgidx-write") as self.thread:
            yield

    def commit(self, gone: Sequence[int] = (), final: bool = False) -> None:
        """Hand everything pending to the writer thread as one transaction.

        The settings (and a reindex's reset) go with the first model results, or with the last commit of
        a run that needed no model: a run that fails before its first batch (a working size the model
        cannot take, say) leaves the index's settings as they were.
        """
        first = self.settings_pending and (self.labelled_pending or final)
        job = _Commit(self.saves, self.copies, self.updates, self.scored, list(gone), first, self.dates)
        if not job.files and not gone and not first:
            return
        self.saves, self.copies, self.updates, self.scored, self.dates = [], [], [], [], []
        self.settings_pending = self.settings_pending and not first
        self.labelled_pending = False
        self.writes.append(self.thread.submit(self.write, job))
        self.collect(wait=len(self.writes) > MAX_QUEUED_COMMITS)

    def collect(self, wait: bool = False) -> None:
        """Report the commits that are done (with ``wait``, wait for the oldest); raise a failed one's error."""
        while self.writes and (wait or self.writes[0].done()):
            self.done += self.writes.popleft().result()
            self.emit(Progress(self.done, self.todo))
            wait = False

    def finish(self, gone: Sequence[int]) -> None:
        """The run's last transaction (pruning ``gone``), and wait for every commit."""
        self.commit(gone, final=True)
        while self.writes:
            self.collect(wait=True)
        if self.compounds_stale:
            self.refresh_compounds()

    # -- compounds (`query.compounds`)

    def with_compounds(self, scores: regions.Regions) -> regions.Regions:
        """A photo's rows with its compounds' rows, derived from its models' rows (any compound rows it came
        with, as rows read back from an index, are derived again)."""
        image_labels = [label for label in scores.image_labels if not is_compound(label.class_id)]
        cell_labels = [label for label in scores.cell_labels if not is_compound(label.class_id)]
        images, cells = self.compounds.derive(
            ((label.cell, label.class_id, label.score) for label in cell_labels), self.calibration)
        return scores._replace(
            image_labels=[*image_labels, *(regions.ImageLabel(c, value, 0.0) for c, value in images)],
            cell_labels=[*cell_labels, *(regions.CellLabel(cell, c, value, 0.0) for cell, c, value in cells)],
        )

    def check_compounds(self, conn: sa.Connection) -> None:
        """In the run's first transaction, before it stores labels: the compounds' classes, and whether the
        index's labels lack this code's compound rows (then queries compute those words until
        `refresh_compounds` has derived them: the meta key goes until then)."""
        store.add_classes(conn, self.t, self.compounds.class_rows())
        if store.read_meta(conn).get(COMPOUNDS_KEY) != self.compounds.digest:
            self.compounds_stale = store.has_labels(conn, self.t)
            store.write_meta(conn, self.t, COMPOUNDS_KEY, None if self.compounds_stale else self.compounds.digest)

    def refresh_compounds(self) -> None:
        """Derive every image's compound rows again (`refresh_compounds`) and record them for queries."""
        with _store_errors(self.engine):
            self.summary.compounded = refresh_compounds(self.engine, self.t, self.compounds, self.calibration)
        self.compounds_stale = False

    # -- writer thread

    def boxes_of(self, read: Read) -> tuple[list, list]:
        """The boxes and the lines of text of a photo the model has labelled, once its detector thread has them."""
        start = time.perf_counter()
        found = read.boxes.result()
        self.summary.box_wait_seconds += time.perf_counter() - start
        if read.box_index == 0:  # the batch's time, counted once
            self.summary.face_seconds += found.face_seconds
            self.summary.object_seconds += found.object_seconds
            self.summary.text_seconds += found.text_seconds
        boxes, lines = found.boxes[read.box_index], found.lines[read.box_index]
        read.boxes = None
        return boxes, lines

    def write(self, job: _Commit) -> int:
        """Score the model's batches and store one transaction; returns the files it holds."""
        if self.write_failed:
            raise RuntimeError("not written: an earlier transaction of this run failed")
        try:
            start, waited = time.perf_counter(), self.summary.box_wait_seconds
            saves = list(job.saves)
            for group, seen in job.scored:
                for read, scores in zip(group, regions.score_batch(seen, self.calibration)):
                    if read.boxes is not None:
                        boxes, lines = self.boxes_of(read)
                        scores = regions.with_boxes(scores, boxes, read.width, read.height)
                        if self.settings.text:
                            scores = regions.with_text(scores, lines, read.width, read.height)
                        self.count_boxes(scores)
                    saves.append((self.labelled_row(read), scores))
            saves = [(row, None if scores is None else self.with_compounds(scores)) for row, scores in saves]
            labelled = bool(job.updates or job.copies) or any(scores is not None for _, scores in saves)

            def transaction(conn: sa.Connection) -> None:
                # Other runs may write the same PostgreSQL index: the settings are read again under a lock
                # (exclusive to store them), and a transaction whose labels they no longer describe fails.
                stored = store.read_settings_locked(conn, self.t, exclusive=job.first)
                changed = stored is not None and stored != self.settings
                if changed and (not self.redo_all if job.first else labelled):
                    raise IndexSettingsError(
                        f"another imgidx index stored labels from {stored.describe()} meanwhile, not "
                        f"{self.settings.describe()}; this run stopped rather than mix them: pass --reindex to "
                        "rebuild the index, or leave out --model/--size/--precision to keep its settings"
                    )
                if job.first:
                    if self.redo_all:
                        store.mark_all_stale(conn, self.t, drop_labels=changed)
                    store.write_settings(conn, self.t, self.settings)
                    self.check_compounds(conn)
                store.update_files(conn, self.t, job.updates)
                store.copy_images(conn, self.t, job.copies)
                store.save_images(conn, self.t, saves)
                store.delete_images(conn, self.t, job.gone)
                store.set_taken(conn, self.t, [(image_id, taken) for image_id, taken in job.dates if taken])

            with _store_errors(self.engine):
                store.transaction(self.engine, transaction)
            self.summary.write_seconds += time.perf_counter() - start - (self.summary.box_wait_seconds - waited)
        except BaseException:
            self.write_failed = True
            raise
        return job.files
