"""Batch indexing: walk the folders, diff them against the index, decode in parallel with inference, commit.

One run:

1. **Walk** the roots (`indexer.walk`: image suffixes only; hidden files and folders and the database left out; symlinked
   folders followed once each, so a loop ends). An image name that is no file to read (a FIFO, a broken
   link, a path longer than the system takes) is *skipped*: recorded with its reason, never opened.
2. **Diff** against the index: a file whose size and mtime match a row labelled with the current settings
   is skipped unread. Every other file is read once; its sha256 comes from the same bytes that are decoded.
   Content the index already labelled (with the current settings) is not decoded at all: a file whose
   old path is gone is *moved* (its row follows it), otherwise its labels are *copied*; a file merely
   touched keeps its labels.
3. **Decode** on a thread pool (Pillow and hashlib release the GIL) while the main thread runs the model
   on batches of images of one working shape. The model is loaded only when the first image needs it.
4. **Boxes**: the photos handed to the model go through the detectors (`indexer.detect`: COCO objects,
   batched, then faces guided by the person boxes) on a pool of detector threads, as many as decoding
   threads, each with detectors of its own, beside the model, so every CPU stays busy (bench/RESULTS.md).
5. **Commit** each batch in one transaction (image rows with their labels and boxes, failures, moves) on a
   writer thread that also turns the batch's logits into region scores and waits for its boxes, so none
   of that holds up the model. A killed run leaves every committed batch whole; the next run skips them,
   by the diff of step 2.
6. **Prune** rows of files that are gone from the walked roots (never under a folder that could not be
   read).

Faces (`indexer.faces`) and objects (`indexer.objects`) are looked for in every photo the model labels
(step 4), unless the index was built without them; on the photo as decoded for the model, so these settings
never change its labels.

Settings (model, working size, precision, faces, objects) live in the index's meta table. A run with other settings is
refused unless ``reindex`` is given; then every image is redone and the old labels are dropped in the
first committed transaction, so the index never mixes two settings.

No printing here: progress goes out as events to ``on_event``.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import sqlalchemy as sa

from indexer import calibration, detect, faces, ignore, images, regions, store
from indexer import runtime as runtimes
from indexer.locking import writer_lock  # noqa: F401  (merge and the tests take it from here)
from indexer.errors import FolderError, IndexSettingsError, StoreError
from indexer.geometry import total_stride
from indexer.inference import Poolings, check_size, views
from indexer.labels import FACE_CLASS
from indexer.models import DEFAULT_MODEL
from indexer.models.base import Backbone
from indexer.run_types import (
    Event, FileFailed, FileSkipped, FolderUnreadable, ModelLoaded, ModelLoading, Planned, Progress, Read, Summary,
    Task, read_content,
)
from indexer.store import FileRecord, FileRow, IndexSettings
from indexer.walk import FoundFile, Walk, walk

DEFAULT_BATCH = 8
#: Failures, moves and copies waiting for the next model batch are committed once this many pile up.
COMMIT_EVERY = 256
#: Files read ahead of the model, in batches: enough that a batch is decoded while the previous one runs.
READ_AHEAD_BATCHES = 3
#: Decoded images waiting for a full batch of their shape, in batches, before the largest group runs short.
MAX_WAITING_BATCHES = 4
#: Transactions queued for the writer thread before the model waits for it.
MAX_QUEUED_COMMITS = 2
DB_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".lock")
#: "local": threads and the model in this process; "ray": Ray Data tasks and actors (`indexer.ray_engine`).
RUNNERS = ("local", "ray")
#: A new index looks for faces unless told not to (``imgidx index --no-faces``).
DEFAULT_FACES = True
#: A new index looks for objects unless told not to (``imgidx index --no-objects``).
DEFAULT_OBJECTS = True
#: Photos per call of the object detector, when it does not say (``batch``): what it measured fastest at on
#: TensorFlow (issue 20). The model's batches are cut into such chunks, each searched on a detector thread.
DEFAULT_DETECT_BATCH = 4
#: OpenVINO threads of each detector thread's object detector: one, like the face detector's, so the
#: detector threads (as many as CPUs) and the backbone share the CPUs without waiting on each other. Against
#: OpenVINO's own choice (all cores each) and against the detector on the model thread after each batch, this
#: indexed fastest (bench/index_throughput.py, bench/RESULTS.md).
OBJECT_DETECTOR_THREADS = 1


def database_files(engine: sa.Engine) -> set[str]:
    """The database file and its journal, WAL and lock companions, which a walk must not index."""
    path = store.sqlite_path(str(engine.url))
    if path is None:
        return set()
    real = os.path.realpath(path)
    return {real + suffix for suffix in DB_SIDE_SUFFIXES}


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


# --- Settings -----------------------------------------------------------------------------------------


def default_object_detectors() -> Callable[[], detect.ObjectDetector]:
    """The loader of the process's object detectors, `objects.Detectors` with `OBJECT_DETECTOR_THREADS`
    (imported when a run needs it)."""
    from indexer import objects

    return objects.Detectors(threads=OBJECT_DETECTOR_THREADS)


def choose_settings(
    stored: IndexSettings | None, model: str | None, size: int | None, precision: str, reindex: bool,
    with_faces: bool | None = None, runtime: str = "auto", with_objects: bool | None = None,
) -> tuple[IndexSettings, bool]:
    """The settings of this run and whether every stored image must be redone.

    Unset ``model``/``size``/``with_faces``/``with_objects`` and ``precision``/``runtime`` ``"auto"`` mean:
    keep the index's own (or the defaults for a new index, `indexer.runtime.choose`). Asking for other
    settings than the index holds raises `IndexSettingsError` unless ``reindex``.
    """
    model = model or (stored.model if stored else DEFAULT_MODEL)
    size = size or (stored.working_size if stored else images.DEFAULT_WORKING_SIZE)
    runtime, precision, quantization = runtimes.choose(stored, model, size, runtime, precision, reindex)
    if with_faces is None:
        with_faces = stored.faces if stored else DEFAULT_FACES
    if with_objects is None:
        with_objects = stored.objects if stored else DEFAULT_OBJECTS
    chosen = IndexSettings(model, size, precision, faces=with_faces, runtime=runtime, quantization=quantization,
                           objects=with_objects)
    if stored is None:
        return chosen, reindex
    if chosen != stored and not reindex:
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
    return chosen, reindex


@contextmanager
def _store_errors(engine: sa.Engine) -> Iterator[None]:
    """A database that cannot be written (locked, disk full, read-only) is a `StoreError`, not a crash."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        where = store.shown_engine(engine)
        raise StoreError(f"cannot write to the index {where}: {store.error_reason(exc)}") from None


class _Run:
    """The state of one indexing run (see the module docstring)."""

    def __init__(self, engine, roots, load_backbone, settings, redo_all, batch, workers, prune, on_event,
                 process=None, load_detector=None, load_object_detector=None):
        self.engine = engine
        self.load_detector = (load_detector or faces.Detectors()) if settings.faces else None
        self.load_object_detector = (load_object_detector or default_object_detectors()) if settings.objects else None
        #: The detectors not searching photos just now: a pair (faces, objects) per detector thread, so none
        #: waits for another's.
        self.detectors: queue.SimpleQueue[tuple] | None = None
        self.detect_pool: ThreadPoolExecutor | None = None
        #: Photos waiting for the object detector: searched in chunks of its batch (`DEFAULT_DETECT_BATCH`).
        self.undetected: list[Read] = []
        self.detect_batch = DEFAULT_DETECT_BATCH
        self.process_tasks = process or _Run.process
        self.roots = roots
        self.load_backbone = load_backbone
        self.settings = settings
        self.redo_all = redo_all
        self.batch = batch
        self.workers = workers
        self.prune = prune
        self.emit = on_event or (lambda event: None)
        self.t = store.tables(engine)
        self.summary = Summary(settings)
        self.backbone: Backbone | None = None
        self.stride: int | None = None
        self.settings_pending = True
        #: Model results are waiting for the next commit (the first such commit also stores the settings).
        self.labelled_pending = False
        self.writer: ThreadPoolExecutor | None = None
        self.writes: deque[Future] = deque()
        self.write_failed = False
        self.scored: list[tuple[list[Read], list[regions.View]]] = []
        self.saves: list[tuple[FileRow, regions.Regions | None]] = []
        self.copies: list[tuple[FileRow, int]] = []
        self.updates: list[tuple[int, str, int, int]] = []
        self.moved_ids: set[int] = set()
        self.known: dict[str, FileRecord] = {}
        self.waiting: dict[tuple[int, int], list[Read]] = {}
        self.poolings: Poolings | None = None
        self.calibration = calibration.for_model(settings.model)
        self.done = 0
        self.todo = 0

    # -- plan

    def current(self, record: FileRecord) -> bool:
        return not self.redo_all and record.is_current(self.settings)

    def plan(self, found: Walk, records: list[FileRecord]) -> tuple[list[Task], list[FileRecord]]:
        by_path = {r.path: r for r in records}
        tasks = []
        for f in found.files:
            record = by_path.get(f.path)
            if record and _unchanged(record, f) and self.current(record):
                self.summary.unchanged += 1
            else:
                tasks.append(Task(f, record))
        in_question = {t.found.path for t in tasks}
        self.known = {
            r.content_hash: r for r in records if self.current(r) and r.content_hash and r.path not in in_question
        }
        seen = {f.path for f in found.files} | {f.path for f, _ in found.skipped}
        unreadable = [path for path, _ in found.unreadable]
        missing = [
            r for r in records if r.path not in seen and _under(r.path, self.roots) and not _under(r.path, unreadable)
        ]
        if self.redo_all:
            self.summary.stale_elsewhere = sum(
                1 for r in records if r.error is None and not _under(r.path, self.roots)
            )
        return tasks, missing

    # -- worker side (thread pool)

    def read(self, task: Task) -> Read:
        content = read_content(
            task.found.path, self.settings.working_size, lambda digest: self.known_source(task, digest) is not None
        )
        if content.error is not None:
            return Read(task, content.digest, error=content.error)
        if content.decoded is None:
            return Read(task, content.digest, source=self.known_source(task, content.digest))
        decoded = content.decoded
        read = Read(task, content.digest, pixels=decoded.pixels, width=decoded.width, height=decoded.height)
        if self.settings.faces or self.settings.objects:
            read.detect_pixels = faces.detection_pixels(decoded.pixels)
        if self.stride is not None:
            self.resize(read)
        return read

    def known_source(self, task: Task, digest: str) -> FileRecord | None:
        """The row already holding labels of this content: the file's own (merely touched), or another's."""
        record = task.record
        touched = record is not None and record.content_hash == digest and self.current(record)
        return record if touched else self.known.get(digest)

    def labelled_row(self, read: Read) -> FileRow:
        """The ``images`` row of a file the model has just labelled."""
        found = read.task.found
        return FileRow(
            found.path, found.size_bytes, found.mtime_ns, read.content_hash, read.width, read.height,
            self.settings.model, self.settings.working_size,
        )

    def resize(self, read: Read) -> None:
        read.shape = images.working_shape(read.height, read.width, self.settings.working_size, self.stride)
        read.pixels = images.resize(read.pixels, read.shape)

    # -- main thread

    def handle(self, read: Read) -> None:
        found, record = read.task.found, read.task.record
        if read.error is not None:
            still = record is not None and record.error is not None and _unchanged(record, found)
            if still:
                self.summary.still_failing += 1
            else:
                self.summary.failed += 1
            self.summary.failures.append((found.path, read.error))
            row = FileRow(found.path, found.size_bytes, found.mtime_ns, read.content_hash, error=read.error)
            self.saves.append((row, None))
            self.emit(FileFailed(found.path, read.error, still))
        elif read.source is not None:
            self.reuse(read)
        else:
            if self.backbone is None:
                self.load()
            if read.shape is None:
                self.resize(read)
            if self.detectors is not None:
                self.undetected.append(read)
                if len(self.undetected) >= self.detect_batch:
                    self.start_detecting()
            group = self.waiting.setdefault(read.shape, [])
            group.append(read)
            if len(group) >= self.batch:
                self.infer(read.shape)
            elif sum(len(g) for g in self.waiting.values()) >= self.batch * MAX_WAITING_BATCHES:
                self.infer(max(self.waiting, key=lambda s: len(self.waiting[s])))
        if len(self.saves) + len(self.copies) + len(self.updates) >= COMMIT_EVERY:
            self.commit()

    def reuse(self, read: Read) -> None:
        """Content the index already labelled: touched in place, moved, or copied."""
        found, record, source = read.task.found, read.task.record, read.source
        if record is not None and record.image_id == source.image_id:
            self.updates.append((record.image_id, found.path, found.size_bytes, found.mtime_ns))
            self.summary.unchanged += 1
        elif record is None and source.image_id not in self.moved_ids and not os.path.lexists(source.path):
            self.updates.append((source.image_id, found.path, found.size_bytes, found.mtime_ns))
            self.moved_ids.add(source.image_id)
            self.known[read.content_hash] = replace(source, path=found.path)
            self.summary.moved += 1
        else:
            row = FileRow(
                found.path, found.size_bytes, found.mtime_ns, read.content_hash,
                model=source.model, working_size=source.working_size,
            )
            self.copies.append((row, source.image_id))
            self.summary.copied += 1

    def load(self) -> None:
        """Load the model and the first face detector. `ModelLoaded` reports both, as the summary does: the
        bar takes that time out of its clock, so the two rates agree also where the detector loads slowly."""
        self.emit(ModelLoading(self.settings.model))
        start = time.perf_counter()
        backbone = self.load_backbone(self.settings)
        if (backbone.name, backbone.precision) != (self.settings.model, self.settings.precision):
            raise IndexSettingsError(
                f"the loaded model is {backbone.name} ({backbone.precision}), "
                f"but the index is built with {self.settings.describe()}"
            )
        check_size(backbone, self.settings.working_size)
        if self.settings.faces or self.settings.objects:
            self.detectors = queue.SimpleQueue()
            first = self.new_detectors()
            self.detectors.put(first)
            # Faces alone search each photo as soon as it is decoded; objects go in the detector's batches.
            self.detect_batch = (getattr(first[1], "batch", None) or DEFAULT_DETECT_BATCH) if first[1] else 1
        self.summary.load_seconds = time.perf_counter() - start
        self.emit(ModelLoaded(self.settings.model, self.summary.load_seconds))
        self.stride = total_stride(backbone.layers)
        self.backbone = backbone
        self.poolings = Poolings(backbone)
        self.summary.model_loaded = True

    def infer(self, shape: tuple[int, int]) -> None:
        """Run the model on the waiting images of ``shape``; scoring and storing go to the writer thread."""
        group = self.waiting.pop(shape)
        if any(read.boxes is None for read in group if read.detect_pixels is not None):
            self.start_detecting()  # the writer will wait for their boxes
        start = time.perf_counter()
        seen = views(self.backbone, np.stack([r.pixels for r in group]), self.poolings)
        self.summary.model_seconds += time.perf_counter() - start
        self.scored.append((group, seen))
        self.summary.indexed += len(group)
        self.labelled_pending = True
        self.commit()

    def new_detectors(self) -> tuple:
        """A detector thread's own detectors: (faces, objects), None where the index has that one off."""
        return (self.load_detector() if self.load_detector else None,
                self.load_object_detector() if self.load_object_detector else None)

    def start_detecting(self) -> None:
        """Hand the photos waiting for their boxes to a detector thread, as one batch."""
        if self.undetected:
            reads, self.undetected = self.undetected, []
            job = self.detect_pool.submit(self.detect, reads)
            job.reads = reads
            for i, read in enumerate(reads):
                read.boxes, read.box_index = job, i

    def detect(self, reads: list[Read]) -> detect.Found:
        """Detector thread: the boxes of photos on their way to the model (`indexer.detect`). The box pass
        costs as much as the model or more (bench/RESULTS.md), so it runs on as many threads as decoding,
        beside the model and the writer, each thread with detectors of its own: the first are loaded with the
        model, the others when a thread finds none free (at most one pair per thread), in that thread."""
        try:
            face_detector, object_detector = self.detectors.get_nowait()
        except queue.Empty:
            face_detector, object_detector = self.new_detectors()
        try:
            return detect.find([r.detect_pixels for r in reads], [(r.width, r.height) for r in reads],
                               face_detector, object_detector)
        finally:
            self.detectors.put((face_detector, object_detector))
            for read in reads:
                read.detect_pixels = None

    def boxes_of(self, read: Read) -> list:
        """Writer thread: the boxes of a photo the model has labelled, once its detector thread has them."""
        start = time.perf_counter()
        found = read.boxes.result()
        self.summary.box_wait_seconds += time.perf_counter() - start
        if read.box_index == 0:  # the batch's time, counted once
            self.summary.face_seconds += found.face_seconds
            self.summary.object_seconds += found.object_seconds
        boxes = found.boxes[read.box_index]
        read.boxes = None
        return boxes

    def count_boxes(self, scores: regions.Regions) -> None:
        """Count the faces and objects a photo stores (`Summary.faces_found`, `Summary.objects_found`)."""
        faces_found = sum(box.class_id == FACE_CLASS for box in scores.boxes)
        self.summary.faces_found += faces_found
        self.summary.objects_found += len(scores.boxes) - faces_found

    def commit(self, gone: Sequence[int] = (), final: bool = False) -> None:
        """Hand everything pending to the writer thread as one transaction.

        The settings (and a reindex's reset) go with the first model results, or with the last commit of
        a run that needed no model: a run that fails before its first batch (a working size the model
        cannot take, say) leaves the index's settings as they were.
        """
        first = self.settings_pending and (self.labelled_pending or final)
        job = _Commit(self.saves, self.copies, self.updates, self.scored, list(gone), first)
        if not job.files and not gone and not first:
            return
        self.saves, self.copies, self.updates, self.scored = [], [], [], []
        self.settings_pending = self.settings_pending and not first
        self.labelled_pending = False
        self.writes.append(self.writer.submit(self.write, job))
        self.collect(wait=len(self.writes) > MAX_QUEUED_COMMITS)

    def collect(self, wait: bool = False) -> None:
        """Report the commits that are done (with ``wait``, wait for the oldest); raise a failed one's error."""
        while self.writes and (wait or self.writes[0].done()):
            self.done += self.writes.popleft().result()
            self.emit(Progress(self.done, self.todo))
            wait = False

    def write(self, job: "_Commit") -> int:
        """Writer thread: score the model's batches and store one transaction; returns the files it holds."""
        if self.write_failed:
            raise RuntimeError("not written: an earlier transaction of this run failed")
        try:
            start, waited = time.perf_counter(), self.summary.box_wait_seconds
            saves = list(job.saves)
            for group, seen in job.scored:
                for read, scores in zip(group, regions.score_batch(seen, self.calibration)):
                    if read.boxes is not None:
                        scores = regions.with_boxes(scores, self.boxes_of(read), read.width, read.height)
                        self.count_boxes(scores)
                    saves.append((self.labelled_row(read), scores))
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
                store.update_files(conn, self.t, job.updates)
                store.copy_images(conn, self.t, job.copies)
                store.save_images(conn, self.t, saves)
                store.delete_images(conn, self.t, job.gone)

            with _store_errors(self.engine):
                store.transaction(self.engine, transaction)
            self.summary.write_seconds += time.perf_counter() - start - (self.summary.box_wait_seconds - waited)
        except BaseException:
            self.write_failed = True
            raise
        return job.files

    def run(self, found: Walk, started: float) -> Summary:
        with self.engine.connect() as conn:
            records = store.file_records(conn, self.t)
        tasks, missing = self.plan(found, records)
        self.todo = len(tasks)
        self.summary.found = len(found.files)
        self.summary.unreadable_folders = len(found.unreadable)
        for path, error in found.unreadable:
            self.emit(FolderUnreadable(path, error))
        self.record_skipped(found.skipped, {r.path: r for r in records})
        self.summary.planning_seconds = time.perf_counter() - started
        self.emit(Planned(len(found.files), len(tasks), self.summary.unchanged, len(missing)))
        self.detect_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="imgidx-detect")
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="imgidx-write") as self.writer:
                try:
                    if tasks:
                        self.process_tasks(self, tasks)
                    gone = [r.image_id for r in missing if r.image_id not in self.moved_ids]
                    if self.prune:
                        self.summary.pruned = len(gone)
                    else:
                        self.summary.missing = len(gone)
                    self.commit(gone if self.prune else (), final=True)
                    while self.writes:
                        self.collect(wait=True)
                except BaseException:
                    # The photos not handed to the writer will not be stored: their boxes need no search. The
                    # writer still stores the batches it holds, with their boxes.
                    unstored = {id(read) for read in itertools.chain.from_iterable(self.waiting.values())}
                    for read in itertools.chain.from_iterable(self.waiting.values()):
                        if read.boxes is not None and all(id(r) in unstored for r in read.boxes.reads):
                            read.boxes.cancel()
                    raise
        finally:
            self.detect_pool.shutdown()
        self.summary.elapsed = time.perf_counter() - started
        self.summary.done = self.done
        return self.summary

    def record_skipped(self, skipped: list[tuple[FoundFile, str]], by_path: dict[str, FileRecord]) -> None:
        """Report the skipped entries, and store the ones whose row does not say so already."""
        for found, reason in skipped:
            row = FileRow(found.path, found.size_bytes, found.mtime_ns, None, error=store.SKIPPED_PREFIX + reason)
            record = by_path.get(found.path)
            still = record is not None and record.error == row.error and _unchanged(record, found)
            if still:
                self.summary.still_failing += 1
            else:
                self.summary.skipped += 1
                self.saves.append((row, None))
            self.emit(FileSkipped(found.path, reason, still))

    def process(self, tasks: list[Task]) -> None:
        window = self.batch * READ_AHEAD_BATCHES + self.workers
        pending: deque[Future] = deque()
        queue = iter(tasks)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="imgidx-read") as pool:
            try:
                for task in queue:
                    pending.append(pool.submit(self.read, task))
                    if len(pending) >= window:
                        break
                while pending:
                    read = pending.popleft().result()
                    for task in queue:
                        pending.append(pool.submit(self.read, task))
                        break
                    self.handle(read)
                    self.collect()
                for shape in list(self.waiting):
                    self.infer(shape)
            finally:
                for future in pending:
                    future.cancel()


def _unchanged(record: FileRecord, found: FoundFile) -> bool:
    """The file has the size and modification time the index holds for it (the diff's own test)."""
    return (record.size_bytes, record.mtime_ns) == (found.size_bytes, found.mtime_ns)


@dataclass
class _Commit:
    """One transaction's worth of changes; ``scored`` are model batches whose views are still to be scored."""

    saves: list[tuple[FileRow, regions.Regions | None]]
    copies: list[tuple[FileRow, int]]
    updates: list[tuple[int, str, int, int]]
    scored: list[tuple[list[Read], list[regions.View]]]
    gone: list[int]
    first: bool

    @property
    def files(self) -> int:
        return len(self.saves) + len(self.copies) + len(self.updates) + sum(len(g) for g, _ in self.scored)


def index(
    engine: sa.Engine,
    roots: Sequence[str | Path],
    load_backbone: Callable[[IndexSettings], Backbone],
    *,
    model: str | None = None,
    size: int | None = None,
    precision: str = "auto",
    reindex: bool = False,
    batch: int | None = None,
    workers: int | None = None,
    prune: bool = True,
    on_event: Callable[[Event], None] | None = None,
    runner: str = "local",
    address: str | None = None,
    check_model: Callable[[IndexSettings], None] | None = None,
    exclude: Sequence[str] = (),
    with_faces: bool | None = None,
    load_detector: Callable[[], faces.FaceDetector] | None = None,
    runtime: str = "auto",
    with_objects: bool | None = None,
    load_object_detector: Callable[[], detect.ObjectDetector] | None = None,
) -> Summary:
    """Bring the index behind ``engine`` up to date with the image files under ``roots``.

    ``load_backbone(settings)`` is called at most once, and only if some image needs the model. See the
    module docstring for what a run does; raises `FolderError` for a root that does not exist,
    `IndexSettingsError` for a settings mismatch without ``reindex``, `IndexBusyError` if another run holds
    the index.

    ``runtime`` (``auto``, ``tf``, ``openvino``) is recorded in the settings with ``precision``; see
    `indexer.runtime` for what ``auto`` picks. ``load_backbone`` must honour them.

    ``runner="ray"`` runs reading and the model on Ray (`indexer.ray_engine`): a local instance, or the
    cluster at ``address``; ``workers`` then counts model actors (default: one per node).

    ``check_model(settings)``, once the run's settings are known and before the folders are walked, may
    refuse a model that could not be loaded (`indexer.models.check_weights`), so the run stops at once
    rather than when the first image needs the model.

    ``exclude`` globs, and each root folder's ``.imgidxignore``, leave files and folders out of the walk
    (`indexer.ignore`); excluded files already in the index are pruned like deleted ones.

    ``with_faces`` looks for faces (`indexer.faces`) in every photo the model labels, ``with_objects`` for
    COCO objects (`indexer.objects`); None keeps the index's setting (a new index: `DEFAULT_FACES`,
    `DEFAULT_OBJECTS`). ``load_detector()`` gives a face detector for one detector thread, and
    ``load_object_detector()`` an object detector: each called with the model's loading, then by each further
    detector thread that needs one (at most ``workers`` calls in all); the defaults, `faces.Detectors` and
    `objects.Detectors`, reuse the process's detectors from run to run. Neither is called for a detector the
    index has off.
    """
    started = time.perf_counter()
    batch = batch or DEFAULT_BATCH
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if runner == "ray":
        from indexer import ray_engine

        session = ray_engine.Session(ray_engine.Cluster(address, workers))
        list_files, close = session.walk, session.close
        process = functools.partial(ray_engine.process, session)
        workers = 1
    else:
        list_files, process, close = walk, _Run.process, lambda: None
        workers = workers or os.cpu_count() or 1
    real_roots = []
    for root in roots:
        real = os.path.realpath(os.path.expanduser(str(root)))
        if not os.path.exists(real):
            raise FolderError(f"{root}: no such folder")
        if real not in real_roots:
            real_roots.append(real)
    rules = ignore.for_roots(real_roots, exclude)
    with writer_lock(engine):
        with engine.connect() as conn:
            settings, redo_all = choose_settings(
                store.read_settings(conn), model, size, precision, reindex, with_faces, runtime, with_objects
            )
        if check_model is not None:
            check_model(settings)
        try:
            found = list_files(real_roots, database_files(engine), rules)
            run = _Run(
                engine, real_roots, load_backbone, settings, redo_all, batch, workers, prune,
                on_event, process, load_detector, load_object_detector,
            )
            return run.run(found, started)
        finally:
            close()
