"""Batch indexing: walk the folders, diff them against the index, decode in parallel with inference, commit.

This module holds the run's entry (`index`) and its read/infer loop (`Run`). The steps around the loop have
modules of their own, below it, so that the Ray engine and int8 calibration reuse them without importing
the run: the walk (`indexer.walk`), the settings and the diff (`indexer.plan`), the commits
(`indexer.writer`), and what the engines exchange with the run (`indexer.run_types`). One run:

1. **Walk** the roots (`indexer.walk`: image suffixes only; hidden files and folders and the database left
   out; symlinked folders followed once each, so a loop ends). An image name that is no file to read (a
   FIFO, a broken link, a path longer than the system takes) is *skipped*: recorded with its reason, never
   opened.
2. **Diff** against the index (`indexer.plan`): a file whose size and mtime match a row labelled with the
   current settings is skipped unread. Every other file is read once; its sha256 comes from the same bytes
   that are decoded. Content the index already labelled (with the current settings) is not decoded at all:
   a file whose old path is gone is *moved* (its row follows it), otherwise its labels are *copied*; a file
   merely touched keeps its labels.
3. **Decode** on a thread pool (Pillow and hashlib release the GIL) while the main thread runs the model
   on batches of images of one working shape. The model is loaded only when the first image needs it.
4. **Boxes**: the photos handed to the model go through the detectors (`indexer.detect`: COCO objects,
   batched, then faces guided by the person boxes) on a pool of detector threads, as many as decoding
   threads, each with detectors of its own, beside the model, so every CPU stays busy (bench/RESULTS.md).
5. **Commit** each batch in one transaction (`indexer.writer`: image rows with their labels and boxes,
   failures, moves) on a writer thread that also turns the batch's logits into region scores and waits for
   its boxes, so none of that holds up the model. A killed run leaves every committed batch whole; the next
   run skips them, by the diff of step 2.
6. **Prune** rows of files that are gone from the walked roots (never under a folder that could not be
   read).

Faces (`indexer.faces`) and objects (`indexer.objects`) are looked for in every photo the model labels
(step 4), unless the index was built without them; on the photo as decoded for the model, so these settings
never change its labels.

Settings (model, working size, precision, faces, objects) live in the index's meta table. A run with other
settings is refused unless ``reindex`` is given; then every image is redone and the old labels are dropped
in the first committed transaction, so the index never mixes two settings.

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
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import sqlalchemy as sa

from indexer import detect, faces, ignore, images, store
from indexer.errors import FolderError, ImageReadError, IndexSettingsError
from indexer.geometry import total_stride
from indexer.inference import Poolings, check_size, views
from indexer.locking import writer_lock
from indexer.models.base import Backbone
from indexer.plan import (
    DB_SIDE_SUFFIXES, DEFAULT_FACES, DEFAULT_OBJECTS, Plan, RunRequest, choose_settings, database_files, unchanged,
)
from indexer.run_types import (
    Event, FileContent, FileFailed, FileSkipped, FolderUnreadable, ModelLoaded, ModelLoading, Planned, Progress, Read,
    Summary, Task, read_content,
)
from indexer.store import FileRow, IndexSettings
from indexer.taken import Taken
from indexer.walk import FoundFile, Walk, Walker, walk
from indexer.writer import Writer

#: What callers (the CLI, merge, the tests and benches) have always taken from here.
__all__ = [
    "DB_SIDE_SUFFIXES", "DEFAULT_BATCH", "DEFAULT_DETECT_BATCH", "DEFAULT_FACES", "DEFAULT_OBJECTS",
    "OBJECT_DETECTOR_THREADS", "RUNNERS", "Event", "FileContent", "FileFailed", "FileSkipped", "FolderUnreadable",
    "FoundFile", "ModelLoaded", "ModelLoading", "Planned", "Progress", "Read", "Run", "RunRequest", "Summary",
    "Task", "Walk", "Walker", "choose_settings", "database_files", "default_object_detectors", "index",
    "read_content", "walk", "writer_lock",
]

DEFAULT_BATCH = 8
#: Failures, moves and copies waiting for the next model batch are committed once this many pile up.
COMMIT_EVERY = 256
#: Files read ahead of the model, in batches: enough that a batch is decoded while the previous one runs.
READ_AHEAD_BATCHES = 3
#: Decoded images waiting for a full batch of their shape, in batches, before the largest group runs short.
MAX_WAITING_BATCHES = 4
#: "local": threads and the model in this process; "ray": Ray Data tasks and actors (`indexer.ray_engine`).
RUNNERS = ("local", "ray")
#: Photos per call of the object detector, when it does not say (``batch``): what it measured fastest at on
#: TensorFlow (issue 20). The model's batches are cut into such chunks, each searched on a detector thread.
DEFAULT_DETECT_BATCH = 4
#: OpenVINO threads of each detector thread's object detector: one, like the face detector's, so the
#: detector threads (as many as CPUs) and the backbone share the CPUs without waiting on each other. Against
#: OpenVINO's own choice (all cores each) and against the detector on the model thread after each batch, this
#: indexed fastest (bench/index_throughput.py, bench/RESULTS.md).
OBJECT_DETECTOR_THREADS = 1


def default_object_detectors() -> Callable[[], detect.ObjectDetector]:
    """The loader of the process's object detectors, `objects.Detectors` with `OBJECT_DETECTOR_THREADS`
    (imported when a run needs it)."""
    from indexer import objects

    return objects.Detectors(threads=OBJECT_DETECTOR_THREADS)


class Run:
    """One indexing run (see the module docstring): its `Plan` and `Writer`, and between them the loop that
    reads files on a thread pool, runs the model on batches of one shape, and finds boxes on detector threads.
    ``process`` is the loop's middle, ``Run.process`` or the Ray engine's."""

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
        self.process_tasks = process or Run.process
        self.load_backbone = load_backbone
        self.settings = settings
        self.batch = batch
        self.workers = workers
        self.prune = prune
        self.emit = on_event or (lambda event: None)
        self.summary = Summary(settings)
        self.plan = Plan(settings, redo_all, roots, self.summary)
        self.writer = Writer(engine, settings, redo_all, self.summary, self.emit)
        self.backbone: Backbone | None = None
        self.stride: int | None = None
        self.waiting: dict[tuple[int, int], list[Read]] = {}
        self.poolings: Poolings | None = None

    def run(self, found: Walk, started: float) -> Summary:
        with self.engine.connect() as conn:
            records = store.file_records(conn, self.writer.t)
        self.plan.make(found, records)
        tasks = self.plan.tasks
        self.writer.todo = len(tasks) + len(self.plan.undated)
        self.summary.found = len(found.files)
        self.summary.unreadable_folders = len(found.unreadable)
        for path, error in found.unreadable:
            self.emit(FolderUnreadable(path, error))
        for skip in self.plan.skips:
            if not skip.still:
                self.writer.save(skip.row)
            self.emit(FileSkipped(skip.row.path, skip.reason, skip.still))
        self.summary.planning_seconds = time.perf_counter() - started
        self.emit(Planned(len(found.files), self.writer.todo, self.summary.unchanged, len(self.plan.missing)))
        self.detect_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="imgidx-detect")
        try:
            with self.writer.running():
                try:
                    if self.plan.undated:
                        self.date(self.plan.undated)
                    if tasks:
                        self.process_tasks(self, tasks)
                    gone = self.plan.gone()
                    if self.prune:
                        self.summary.pruned = len(gone)
                    else:
                        self.summary.missing = len(gone)
                    self.writer.finish(gone if self.prune else ())
                except BaseException:
                    self.cancel_unstored()
                    raise
        finally:
            self.detect_pool.shutdown()
        self.summary.elapsed = time.perf_counter() - started
        self.summary.done = self.writer.done
        return self.summary

    def cancel_unstored(self) -> None:
        """The photos not handed to the writer will not be stored: their boxes need no search. The writer
        still stores the batches it holds, with their boxes."""
        unstored = {id(read) for read in itertools.chain.from_iterable(self.waiting.values())}
        for read in itertools.chain.from_iterable(self.waiting.values()):
            if read.boxes is not None and all(id(r) in unstored for r in read.boxes.reads):
                read.boxes.cancel()

    def date(self, undated: list[tuple[store.FileRecord, FoundFile]]) -> None:
        """Store the dates of unchanged photos labelled before the index stored dates (schema version 5): their
        headers are read on a thread pool, nothing is decoded and the model is not loaded for them. A file
        that cannot be read now stays undated, for the next run. On the driver with either engine."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="imgidx-date") as pool:
            for start in range(0, len(undated), COMMIT_EVERY):
                chunk = undated[start : start + COMMIT_EVERY]
                for (record, _), taken in zip(chunk, pool.map(_header_date, chunk)):
                    self.writer.dated(record.image_id, taken)
                    self.summary.dated += taken is not None
                self.writer.commit()
                self.writer.collect()

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
                    self.writer.collect()
                for shape in list(self.waiting):
                    self.infer(shape)
            finally:
                for future in pending:
                    future.cancel()

    # -- worker side (thread pool)

    def read(self, task: Task) -> Read:
        content = read_content(
            task.found.path, self.settings.working_size,
            lambda digest: self.plan.known_source(task, digest) is not None,
        )
        if content.error is not None:
            return Read(task, content.digest, error=content.error)
        if content.decoded is None:
            return Read(task, content.digest, source=self.plan.known_source(task, content.digest), taken=content.taken)
        decoded = content.decoded
        read = Read(task, content.digest, pixels=decoded.pixels, width=decoded.width, height=decoded.height,
                    taken=content.taken)
        if self.settings.faces or self.settings.objects:
            read.detect_pixels = faces.detection_pixels(decoded.pixels)
        if self.stride is not None:
            self.resize(read)
        return read

    def resize(self, read: Read) -> None:
        read.shape = images.working_shape(read.height, read.width, self.settings.working_size, self.stride)
        read.pixels = images.resize(read.pixels, read.shape)

    # -- main thread

    def handle(self, read: Read) -> None:
        found, record = read.task.found, read.task.record
        if read.error is not None:
            still = record is not None and record.error is not None and unchanged(record, found)
            if still:
                self.summary.still_failing += 1
            else:
                self.summary.failed += 1
            self.summary.failures.append((found.path, read.error))
            row = FileRow(found.path, found.size_bytes, found.mtime_ns, read.content_hash, error=read.error)
            self.writer.save(row)
            self.emit(FileFailed(found.path, read.error, still))
        elif read.source is not None:
            copy = self.plan.reuse(read)
            if copy is None:
                self.writer.update(read.source.image_id, found, read.taken)
            else:
                self.writer.copy(copy, read.source.image_id)
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
        if self.writer.pending >= COMMIT_EVERY:
            self.writer.commit()

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
        self.writer.inferred(group, seen)
        self.summary.indexed += len(group)
        self.writer.commit()

    # -- detector threads

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


def _header_date(item: tuple[store.FileRecord, FoundFile]) -> Taken | None:
    """The date of an unchanged photo from its header (`images.read_taken`), None where it cannot be read."""
    _, found = item
    try:
        return images.read_taken(found.path, found.mtime_ns)
    except ImageReadError:
        return None


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
    request = RunRequest(model=model, size=size, precision=precision, runtime=runtime, faces=with_faces,
                         objects=with_objects, reindex=reindex)
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
        list_files, process, close = walk, Run.process, lambda: None
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
            settings, redo_all = choose_settings(store.read_settings(conn), request)
        if check_model is not None:
            check_model(settings)
        try:
            found = list_files(real_roots, database_files(engine), rules)
            run = Run(
                engine, real_roots, load_backbone, settings, redo_all, batch, workers, prune,
                on_event, process, load_detector, load_object_detector,
            )
            return run.run(found, started)
        finally:
            close()
