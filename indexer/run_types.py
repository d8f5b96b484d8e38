"""What an indexing run and its engines exchange: the events a run reports, its `Summary`, the files to
read (`Task`), what reading one gives (`Read`), and the reading step itself (`read_content`).

Its own module so that the local loop (`indexer.pipeline`) and the Ray engine (`indexer.ray_engine`), which
both produce these, import them from below instead of from each other.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from indexer import images
from indexer.errors import ImageReadError
from indexer.names import printable
from indexer.store import FileRecord, IndexSettings
from indexer.taken import Taken
from indexer.walk import FoundFile


# --- Events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """The diff is done: ``todo`` files will be read, ``unchanged`` are skipped, ``missing`` are gone."""

    found: int
    todo: int
    unchanged: int
    missing: int


@dataclass(frozen=True)
class ModelLoading:
    """The first image that needs the model is decoded; loading it now."""

    model: str


@dataclass(frozen=True)
class ModelLoaded:
    """The model took ``seconds`` to load (with Ray: until its first results); left out of the rate."""

    model: str
    seconds: float


@dataclass(frozen=True)
class Progress:
    """``done`` of ``todo`` files are committed."""

    done: int
    todo: int


@dataclass(frozen=True)
class FileFailed:
    """One file could not be indexed; it is recorded with ``error``. ``still``: it failed before and has
    not changed since (`Summary.still_failing`)."""

    path: str
    error: str
    still: bool = False


@dataclass(frozen=True)
class FileSkipped:
    """An image name that is no file to read (a FIFO, a broken link, a path too long); recorded with ``reason``.
    ``still``: the index already holds it so, unchanged (`Summary.still_failing`)."""

    path: str
    reason: str
    still: bool = False


@dataclass(frozen=True)
class FolderUnreadable:
    """A folder could not be listed; nothing under it is pruned."""

    path: str
    error: str


Event = Planned | ModelLoading | ModelLoaded | Progress | FileFailed | FileSkipped | FolderUnreadable


@dataclass
class Summary:
    """What one run did. ``missing`` counts gone files left in the index (``prune`` off)."""

    settings: IndexSettings
    found: int = 0
    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    copied: int = 0
    pruned: int = 0
    missing: int = 0
    failed: int = 0
    skipped: int = 0
    #: Files that failed (or were skipped) before and have not changed since: not counted in ``failed`` or
    #: ``skipped``, and no reason by themselves for a failed run, so that a photo that stays broken does
    #: not fail every later run (a nightly job's).
    still_failing: int = 0
    unreadable_folders: int = 0
    #: Images outside the walked roots that a reindex left due for re-indexing.
    stale_elsewhere: int = 0
    #: Unchanged photos labelled before the index stored dates, whose dates were read from their headers.
    dated: int = 0
    #: Photos of an older index given this code's words of several classes (`query.compounds`), no model run.
    compounded: int = 0
    model_loaded: bool = False
    load_seconds: float = 0.0
    #: Files committed, as `Progress` counts them: what a progress bar counts, from `Planned` on.
    done: int = 0
    #: Seconds from the start of the run to `Planned`: the walk and the diff, before a progress bar starts.
    planning_seconds: float = 0.0
    model_seconds: float = 0.0
    #: The detector threads' time in the face detector, summed over them.
    face_seconds: float = 0.0
    #: The detector threads' time in the object detector, summed over them.
    object_seconds: float = 0.0
    #: The writer thread's wait for boxes still being searched (not in ``write_seconds``): while this is a
    #: large share of the run, the box pass sets its pace.
    box_wait_seconds: float = 0.0
    #: The faces and the objects stored (`indexer.boxes.STORED_FROM`).
    faces_found: int = 0
    objects_found: int = 0
    #: The lines of text stored (`indexer.text`), and the seconds the detector threads spent reading text.
    lines_found: int = 0
    text_seconds: float = 0.0
    #: Scoring and committing, on the writer thread, overlapped with the model and the detector threads.
    write_seconds: float = 0.0
    elapsed: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing new failed: no file failed or was skipped but those `still_failing`, no folder unreadable."""
        return not self.failed and not self.skipped and not self.unreadable_folders

    @property
    def rate(self) -> float:
        """Files done per second, as a progress bar counts them (`Progress`) over its span: from `Planned` to
        the last commit, less the model's loading (`ModelLoaded`), which is reported on its own."""
        working = self.elapsed - self.planning_seconds - self.load_seconds
        return self.done / working if self.done and working > 0 else 0.0


# --- Work items ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """A file to read: its walk entry and the index's row for its path, if any."""

    found: FoundFile
    record: FileRecord | None


@dataclass
class Read:
    """A worker's answer: failed (``error``), already known content (``source``) or decoded ``pixels``."""

    task: Task
    content_hash: str | None = None
    error: str | None = None
    source: FileRecord | None = None
    pixels: np.ndarray | None = None
    width: int = 0
    height: int = 0
    shape: tuple[int, int] | None = None
    #: The decoded photo as the detectors search it (`faces.detection_pixels`), until they have.
    detect_pixels: np.ndarray | None = None
    #: When the photo was taken, by its EXIF (None: no EXIF date; the writer falls back to the file's time).
    taken: Taken | None = None
    #: The box pass of the photos it went with (`detect.Found`), from a detector thread (`pipeline.Run.detect`), and
    #: its place among them.
    boxes: Future | None = None
    box_index: int = 0


@dataclass(frozen=True)
class FileContent:
    """A file read: failed (``error``), already known content (no ``decoded``), or decoded."""

    digest: str | None = None
    error: str | None = None
    decoded: images.DecodedImage | None = None
    #: The EXIF date and camera: of the decoded photo, or from the header of known content.
    taken: Taken | None = None


def read_content(path: str, working_size: int, is_known: Callable[[str], bool]) -> FileContent:
    """Read and hash a file, and decode it unless ``is_known(digest)``: the worker step of both engines,
    so they record the same errors. The hash comes from the bytes that are decoded; the date from the EXIF
    the decode opens, or for known content from the header alone."""
    try:
        data = images.read_file(path)
    except ImageReadError as exc:
        return FileContent(error=str(exc))
    digest = hashlib.sha256(data).hexdigest()
    if is_known(digest):
        return FileContent(digest, taken=images.header_taken(data))
    try:
        decoded = images.decode(data, path, working_size)
        return FileContent(digest, decoded=decoded, taken=decoded.taken)
    except ImageReadError as exc:
        return FileContent(digest, error=str(exc))
    except Exception as exc:  # a decoder bug on a strange file must not stop the run
        return FileContent(digest, error=printable(f"{path}: cannot decode ({type(exc).__name__}: {exc})"))
