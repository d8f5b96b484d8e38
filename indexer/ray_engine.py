"""The indexing run on Ray Data: reading and decoding in Ray tasks, the model in a pool of actors.

The run is the local engine's (`indexer.pipeline.Run`) with its middle replaced. The driver diffs the walk
against the index, commits and prunes exactly as the local engine does, so incremental runs, moves, bad
files and resume after a kill behave the same. What moves onto the cluster:

- **listing** (`Session.walk`, when joining a cluster): each root's subfolders are listed by Ray tasks,
  and the symlinks followed here afterwards; a local instance lists in this process, on the same disks;
- **read** (`read_batch`, stateless tasks): read each file, hash it, and decode it at reduced size unless
  the index already holds its content (the driver's known content hashes travel once through the object
  store, as a sorted array of digests);
- **model** (`ModelActor`, one per worker): load the backbone (and the detectors) once, resize to the
  working shape, run it on the batch grouped by shape, find the boxes (`indexer.detect`, on the decoded
  photos, as the local engine), and turn the class maps and boxes into region scores, so only the small
  `Regions` come back to the driver. Failures inside an actor come back as a row carrying the pickled exception,
  so the user sees the same one-line error as with the local engine, not a Ray traceback.

The driver alone writes the index, one transaction per batch of results: with SQLite that is the only
writer the file allows, and with PostgreSQL it keeps the write path the local engine's. Every file's
scores are computed by the same functions as in the local engine (`images.decode`, `images.resize`,
`regions.score_batch`), so the two engines store the same rows.

Ray is an optional dependency (``pip install 'imgidx[ray]'``); nothing here imports it at module level.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from indexer import calibration, detect, faces, ignore, images, regions
from indexer.errors import EngineError, IndexSettingsError, ImgidxError
from indexer.geometry import total_stride
from indexer.inference import Poolings, check_size, views
from indexer.models import native_stderr_silenced
from indexer.names import restored, stored
from indexer.run_types import Event, ModelLoaded, ModelLoading, Read, Summary, Task, read_content
from indexer.store import IndexSettings
from indexer.taken import Taken
from indexer.walk import Walk, Walker, walk

if TYPE_CHECKING:
    from indexer.models.base import Backbone
    from indexer.plan import Plan
    from indexer.writer import Writer

INSTALL_HINT = "the ray engine needs Ray: pip install 'imgidx[ray]'"
#: Logical CPUs a model actor reserves: one, so actors spread one per CPU over a cluster's nodes.
MODEL_ACTOR_CPUS = 1.0
#: Logical CPUs a read task reserves. Decoding costs a fraction of the model per image, so several read
#: tasks share one CPU, as the local engine's decode threads share the cores with the model.
READ_TASK_CPUS = 0.25
#: Files per read task: enough to amortise a task's overhead, few enough to spread a small folder.
READ_BATCH = 4
#: Upper bound on the listing's blocks, so a huge folder does not become millions of tiny Ray objects.
MAX_BLOCKS = 10_000
#: A local Ray instance gets one logical CPU beyond the model actors' for the read tasks.
EXTRA_LOCAL_CPUS = 1
#: Bytes of decoded images a run may hold in Ray's object store, per model actor (about 30 photos decoded
#: for a 448 px working size). Without a bound, the readers decode the whole folder ahead of the model
#: (they start while the actors load it) and hold it in memory; with it, reading keeps pace with the
#: model, as the local engine's read-ahead window does.
IN_FLIGHT_BYTES_PER_WORKER = 64 * 2**20
EMPTY_PIXELS = np.zeros((0, 0, 3), dtype=np.uint8)
#: Row kinds coming back from the cluster.
FAILED, KNOWN, SCORED, FATAL = "failed", "known", "scored", "fatal"


def require_ray():
    """Import Ray, or explain how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(INSTALL_HINT) from None
    return ray


# --- Cluster side ---------------------------------------------------------------------------------------


def read_batch(batch: dict[str, np.ndarray], known_digests: np.ndarray, working_size: int) -> dict[str, list]:
    """Ray task: read, hash and (unless the index knows the content) decode a batch of files."""
    out: dict[str, list] = {key: [] for key in ("path", "kind", "digest", "error", "pixels", "width", "height",
                                                *TAKEN_KEYS)}
    for path, record_hash, record_current in zip(batch["path"], batch["record_hash"], batch["record_current"]):
        path = str(path)  # as `indexer.names.stored` spells it: Arrow strings are UTF-8
        content = read_content(
            restored(path), working_size,
            lambda digest: (record_current and digest == record_hash) or _contains(known_digests, digest),
        )
        pixels, width, height = EMPTY_PIXELS, 0, 0
        if content.error is not None:
            kind = FAILED
        elif content.decoded is None:
            kind = KNOWN
        else:
            kind = SCORED
            pixels, width, height = content.decoded.pixels, content.decoded.width, content.decoded.height
        values = (path, kind, content.digest or "", content.error or "", pixels, width, height,
                  *_taken_columns(content.taken))
        for key, value in zip(out, values):
            out[key].append(value)
    return out


#: The columns a photo's EXIF date and camera travel in (`indexer.taken.Taken`; "" for None): Arrow
#: columns of strings, from the reading tasks through the model actors to the driver.
TAKEN_KEYS = ("taken_at", "taken_offset", "taken_source", "camera")


def _taken_columns(taken: Taken | None) -> tuple[str, ...]:
    if taken is None:
        return ("",) * len(TAKEN_KEYS)
    return (taken.at or "", taken.offset or "", taken.source, taken.camera or "")


def _taken_of(batch: dict, i: int) -> Taken | None:
    at, offset, source, camera = (str(batch[key][i]) for key in TAKEN_KEYS)
    return Taken(at or None, offset or None, source, camera or None) if source else None


def _contains(sorted_digests: np.ndarray, digest: str) -> bool:
    needle = np.frombuffer(bytes.fromhex(digest), dtype="S32")[0]
    at = int(np.searchsorted(sorted_digests, needle))
    return at < len(sorted_digests) and sorted_digests[at] == needle


class ModelActor:
    """Ray actor: one loaded backbone; class maps in, region scores out (see the module docstring)."""

    def __init__(self, load_backbone: Callable[[IndexSettings], "Backbone"], settings: IndexSettings,
                 threads: int | None, load_detector: Callable[[], "faces.FaceDetector"] | None = None,
                 load_object_detector: Callable[[], "detect.ObjectDetector"] | None = None):
        self.settings = settings
        self.detector = None
        self.object_detector = None
        self.fatal: BaseException | None = None
        self.calibration = calibration.for_model(settings.model)
        if threads:
            os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        try:
            self.backbone = load_backbone(settings)
            if (self.backbone.name, self.backbone.precision) != (settings.model, settings.precision):
                raise IndexSettingsError(
                    f"the loaded model is {self.backbone.name} ({self.backbone.precision}), "
                    f"but the index is built with {settings.describe()}"
                )
            check_size(self.backbone, settings.working_size)
            if settings.faces:
                self.detector = (load_detector or faces.load_detector)()
            if settings.objects:
                self.object_detector = (load_object_detector or _load_object_detector)()
            self.stride = total_stride(self.backbone.layers)
            self.poolings = Poolings(self.backbone)
        except Exception as exc:
            self.fatal = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = len(batch["path"])
        out = {"path": list(batch["path"]), "kind": list(batch["kind"]), "digest": list(batch["digest"]),
               "error": list(batch["error"]), "width": list(batch["width"]), "height": list(batch["height"]),
               "regions": [b""] * rows, "model_seconds": [0.0] * rows,
               **{key: list(batch[key]) for key in TAKEN_KEYS}}
        try:
            if self.fatal is not None:
                raise self.fatal
            groups: dict[tuple[int, int], list[int]] = {}
            pixels = {}
            for i in range(rows):
                if out["kind"][i] == SCORED:
                    height, width = batch["pixels"][i].shape[:2]
                    shape = images.working_shape(height, width, self.settings.working_size, self.stride)
                    pixels[i] = images.resize(batch["pixels"][i], shape)
                    groups.setdefault(shape, []).append(i)
            for members in groups.values():
                start = time.perf_counter()
                seen = views(self.backbone, np.stack([pixels[i] for i in members]), self.poolings)
                share = (time.perf_counter() - start) / len(members)
                sizes = [(out["width"][i], out["height"][i]) for i in members]
                found = [[] for _ in members]
                if self.detector is not None or self.object_detector is not None:  # as the local engine
                    found = detect.find([faces.detection_pixels(batch["pixels"][i]) for i in members], sizes,
                                        self.detector, self.object_detector).boxes
                for i, scores, boxes, (width, height) in zip(
                    members, regions.score_batch(seen, self.calibration), found, sizes
                ):
                    if self.detector is not None or self.object_detector is not None:
                        scores = regions.with_boxes(scores, boxes, width, height)
                    out["regions"][i] = pickle.dumps(scores, protocol=pickle.HIGHEST_PROTOCOL)
                    out["model_seconds"][i] = share
        except Exception as exc:
            out["kind"] = [FATAL] * rows
            out["regions"] = [_pickled_error(exc)] * rows
        return out


def _load_object_detector() -> "detect.ObjectDetector":
    from indexer import objects

    return objects.load_detector()


def _pickled_error(exc: BaseException) -> bytes:
    """The exception itself if it pickles (our own errors do), else its one-line description."""
    try:
        return pickle.dumps(exc)
    except Exception:
        return pickle.dumps(EngineError(f"a Ray worker failed: {type(exc).__name__}: {exc}"))


# --- Driver side ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """Where to run: ``address`` of an existing Ray cluster, or None to start a local one.

    ``workers`` model actors; None means one per node of the cluster (one on a local instance).
    """

    address: str | None
    workers: int | None


class Session:
    """Ray for one indexing run: joined or started when first needed, stopped at `close` if started here.

    A local instance is started only once some file needs reading, so an unchanged folder costs no Ray
    start-up; the listing then stays in this process, on the same disks. Joining a cluster, the listing
    is spread over it too (`walk`).
    """

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.ray = require_ray()
        self.owns = False

    def connect(self):
        """Start or join Ray quietly (once)."""
        ray = self.ray
        if ray.is_initialized():
            return ray
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        # Ray's C++ core logs to stderr; a notice about restartable actors would show at every run.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        cluster = self.cluster
        try:
            with native_stderr_silenced():
                if cluster.address is None:
                    ray.init(num_cpus=max(os.cpu_count() or 1, cluster.workers or 1) + EXTRA_LOCAL_CPUS, **quiet)
                else:
                    ray.init(address=cluster.address, **quiet)
        except Exception as exc:
            where = f"the Ray cluster at {cluster.address}" if cluster.address else "a local Ray instance"
            raise EngineError(f"cannot start or reach {where}: {_first_line(exc)}") from None
        self.owns = True
        data_context = ray.data.DataContext.get_current()
        data_context.enable_progress_bars = False
        data_context.print_on_execution_start = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        return ray

    def close(self) -> None:
        if self.owns:
            self.ray.shutdown()
            self.owns = False

    def walk(self, roots: Sequence[str], exclude: set[str], rules: ignore.Rules = ignore.Rules()) -> Walk:
        """`indexer.walk.walk`, with each root's subfolders listed by a Ray task when joining a cluster.

        The tasks list real folders only and hand back what they entered; the symlinked folders are
        followed here afterwards, against every task's entered folders, so a link into another task's
        subtree is not listed twice and a link loop still ends.
        """
        if self.cluster.address is None:
            return walk(roots, exclude, rules)
        ray = self.connect()
        list_remote = ray.remote(num_cpus=READ_TASK_CPUS)(list_subtree)
        walker = Walker(exclude, rules)
        parts: list = []
        for root in roots:
            top = Walker(exclude, rules)
            top.visited = walker.visited
            subfolders: list[str] = []
            if not os.path.isdir(root):
                top.add_root(root)
            else:
                stack: list[str] = []
                top.enter(root, os.stat(root), stack)
                subfolders = top.scan_folder(root) if stack else []
            parts.append((top.result.files, top.result.unreadable, set(), top.linked, top.result.skipped))
            parts += [list_remote.remote(folder, exclude, rules) for folder in subfolders]
        try:
            for part in parts:
                walker.merge(*(part if isinstance(part, tuple) else ray.get(part)))
        except Exception as exc:
            raise EngineError(f"listing the folders on Ray failed: {_first_line(exc)}") from None
        return walker.finish()


def list_subtree(folder: str, exclude: set[str], rules: ignore.Rules = ignore.Rules()) -> tuple:
    """Ray task: one real subtree's files, unreadable folders, entered folders, symlinked folders and skipped
    entries, with the run's exclusion ``rules``."""
    walker = Walker(exclude, rules)
    walker.add_root(folder)
    return walker.result.files, walker.result.unreadable, walker.visited, walker.linked, walker.result.skipped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Run(Protocol):
    """What this engine takes from the local run (`indexer.pipeline.Run`): its settings, loaders, plan and
    writer, and its handling of a file read, so both engines diff, commit and prune with the same code."""

    settings: IndexSettings
    batch: int
    summary: Summary
    plan: "Plan"
    writer: "Writer"
    load_backbone: Callable[[IndexSettings], "Backbone"]
    load_detector: Callable[[], "faces.FaceDetector"] | None
    load_object_detector: Callable[[], "detect.ObjectDetector"] | None
    emit: Callable[[Event], None]

    def handle(self, read: Read) -> None: ...


def known_digests(plan: "Plan") -> np.ndarray:
    """The content hashes the index holds with the current settings, as a sorted array for the readers."""
    digests = np.array([bytes.fromhex(h) for h in plan.known], dtype="S32")
    digests.sort()
    return digests


def process(session: Session, run: Run, tasks: list[Task]) -> None:
    """Run ``tasks`` through Ray and hand every result to ``run`` as the local engine's loop would."""
    started = time.perf_counter()
    ray = session.connect()
    cluster = session.cluster
    try:
        items = [
            {
                "path": stored(task.found.path),
                "record_hash": (task.record.content_hash or "") if task.record else "",
                "record_current": bool(task.record and run.plan.current(task.record)),
            }
            for task in tasks
        ]
        by_path = {stored(task.found.path): task for task in tasks}
        workers = cluster.workers or sum(1 for node in ray.nodes() if node["Alive"])
        threads = max(1, (os.cpu_count() or 1) // workers) if cluster.address is None else None
        ray.data.DataContext.get_current().execution_options.resource_limits = ray.data.ExecutionResources(
            object_store_memory=IN_FLIGHT_BYTES_PER_WORKER * workers
        )
        run.emit(ModelLoading(run.settings.model))
        dataset = (
            ray.data.from_items(items, override_num_blocks=min(-(-len(items) // READ_BATCH), MAX_BLOCKS))
            .map_batches(
                read_batch,
                fn_kwargs={"known_digests": known_digests(run.plan), "working_size": run.settings.working_size},
                batch_size=READ_BATCH,
                num_cpus=READ_TASK_CPUS,
            )
            .map_batches(
                ModelActor,
                fn_constructor_args=(run.load_backbone, run.settings, threads, run.load_detector,
                                     run.load_object_detector),
                batch_size=run.batch,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=MODEL_ACTOR_CPUS,
            )
        )
        first_result = True
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            if first_result:
                run.summary.load_seconds = time.perf_counter() - started
                run.emit(ModelLoaded(run.settings.model, run.summary.load_seconds))
                first_result = False
            for i in range(len(batch["path"])):
                kind = str(batch["kind"][i])
                if kind == FATAL:
                    raise pickle.loads(batch["regions"][i])
                task = by_path[str(batch["path"][i])]
                digest = str(batch["digest"][i]) or None
                if kind == FAILED:
                    run.handle(Read(task, digest, error=str(batch["error"][i])))
                elif kind == KNOWN:
                    run.handle(Read(task, digest, source=run.plan.known_source(task, digest), taken=_taken_of(batch, i)))
                else:
                    read = Read(task, digest, width=int(batch["width"][i]), height=int(batch["height"][i]),
                                taken=_taken_of(batch, i))
                    run.writer.labelled(read, pickle.loads(batch["regions"][i]))
                    run.summary.indexed += 1
                    run.summary.model_seconds += float(batch["model_seconds"][i])
                    run.summary.model_loaded = True
            run.writer.commit()
            run.writer.collect()
    except ImgidxError:
        raise
    except Exception as exc:
        raise EngineError(f"the Ray run failed: {_first_line(exc)}") from None
