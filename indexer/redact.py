"""`imgidx redact`: copies of the photos a query matches, with what it matched blurred or pixelated.

The seed's Street View case: blur the faces of a collection before publishing it, "but only faces and not
other content". For each photo that matches, the regions of every term the query reports are covered:

- a term of box classes (``face``, ``person``, ``car``: any of the detectors' classes, `indexer.boxes`):
  each box of those classes reaching the term's region, as confident as the term's threshold, padded on
  every side (a face by `FACE_PADDING` of its size, an object by `OBJECT_PADDING`) and fading out over that
  padding, so the box itself is covered whole. A term that also has ImageNet classes covers the boxes
  alone, as they outline what the term names far better than the class map does, unless the index was
  built without the detector of some of its box classes (``--no-objects``): then its class map is covered
  too, as before that detector;
- a term of ImageNet classes only (``license plate``, ``screen``): the model runs on the photo again, and the
  class-map positions whose top class is one of the term's (in the term's region) are covered, each
  position over the pixels it owns (`indexer.geometry.AxisGeometry.owned_spans`), the edges smoothed over
  half a stride.

**Originals are never written.** The copies go under ``--out``, which may not be, hold or lie inside a
folder of indexed photos, by path or by device and inode (a bind mount), whatever ``force`` says. Each
copy keeps its photo's path below its indexed folder, under that folder's name when the index has several
(`root_names` makes equal names distinct). Before each copy is written its path is checked by device and
inode (`_Guard`): it may not be an indexed photo (a hard link), lie in a folder of the library (a symbolic
link or a bind mount inside ``--out``), or be a copy this run wrote. A copy is written to a fresh file
and renamed onto its path (`indexer.images.save_copy`), so no existing file is ever opened for writing. An
existing copy is replaced only with ``force``.

Each copy keeps its format, JPEG quantization (its quality), EXIF and orientation: the regions are drawn
in the stored pixels. What may tell where a photo was taken (EXIF's GPS block and maker notes, XMP, IPTC,
a JPEG comment) is left out unless ``keep_location``: a tool for publishing photos should not publish where
they were taken unless asked to. A photo that changed since it was indexed has its boxes found again (a changed
photo's stored boxes would be stale); a photo deleted since is skipped, with a message. Refusals that
concern the whole run (no match, ``--out`` in the library or not writable, copies that exist) come before
anything is written.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sqlalchemy as sa

from indexer import boxes as box_rules, detect, faces, images, store
from indexer.boxes import Box
from indexer.errors import ImageReadError, ImgidxError
from indexer.geometry import cell_bounds
from indexer.labels import COCO_CLASSES, FACE_CLASS, class_name, object_class
from indexer.names import printable, restored

#: The object detector's classes (`indexer.objects`).
OBJECT_CLASSES = tuple(object_class(k) for k in range(len(COCO_CLASSES)))
#: A face box grows by this share of its width and height on every side (detector boxes stop at the
#: eyebrows and the cheeks: hair and ears would show).
FACE_PADDING = 0.25
#: An object box grows by this share of its size on every side: its edges are the detector's estimate, a
#: few percent off (the mean IoU of NanoDet's boxes with true ones is 0.65, issue 20), and what sticks out of
#: a box (a hand, a mirror) should be covered too.
OBJECT_PADDING = 0.1
#: Blur radius as a share of the padded box's shorter side: a face is left as a smooth blob.
FACE_BLUR = 1 / 6
#: Blocks across a padded face box when pixelating.
PIXEL_BLOCKS = 8
#: Blur radius and pixel block of a class-map region, as a share of the network's stride in photo pixels.
MAP_STRENGTH = 1.0
#: The smallest blur radius or block, in pixels.
MIN_STRENGTH = 3.0


class RedactError(ImgidxError):
    """A redaction refused before anything was written: no match, --out inside the library or not writable,
    copies that exist."""


@dataclass(frozen=True)
class Region:
    """Pixels to cover in the upright photo: a box ``(x0, y0, x1, y1)`` (integers, clipped), how much of each
    pixel of it (``mask``, uint8 0-255, the box's shape) and the blur radius or block size."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    strength: float


# --- Events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """``photos`` copies will be written."""

    photos: int


@dataclass(frozen=True)
class PhotoDone:
    path: str
    out: str


@dataclass(frozen=True)
class PhotoNote:
    """One line about one photo: changed since it was indexed (regions found again), skipped (deleted,
    unreadable), or nothing found to cover."""

    path: str
    note: str
    skipped: bool


@dataclass
class Summary:
    """What a redaction wrote: per label, the regions covered and the photos they were in."""

    out: str
    written: int = 0
    skipped: int = 0
    regions: dict[str, int] = field(default_factory=dict)
    photos: dict[str, int] = field(default_factory=dict)
    pixelate: bool = False
    #: The labels of ``regions`` that are box classes (counted by their boxes), the others ImageNet labels.
    box_labels: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.skipped


# --- Where the copies go -----------------------------------------------------------------------------


def indexed_roots(paths: list[str]) -> list[str]:
    """The folders of indexed photos that no other such folder contains: where the library starts."""
    folders = sorted({os.path.dirname(p) for p in paths})
    roots: list[str] = []
    for folder in folders:
        if not any(_inside(folder, root) for root in roots):
            roots.append(folder)
    return roots


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def root_names(roots: list[str]) -> dict[str, str]:
    """A folder name under ``--out`` for each root, all different: the root's own name, and for roots of
    the same name (``x/photos``, ``y/photos``) that name with ``-2``, ``-3``... in the roots' path order,
    so the same index always gives the same names. Names are compared case-folded, as a copy may go to a
    file system that does not tell ``Photos`` from ``photos``."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for root in sorted(roots):
        base = os.path.basename(root.rstrip(os.sep)) or "root"
        name, number = base, 1
        while name.casefold() in taken:
            number += 1
            name = f"{base}-{number}"
        names[root] = name
        taken.add(name.casefold())
    return names


def destinations(paths: list[str], roots: list[str], out: str) -> list[str]:
    """Where each photo's copy goes: its path below its root, under ``out`` (below the root's name, made
    distinct by `root_names`, when the library has several roots)."""
    named = root_names(roots) if len(roots) > 1 else {root: "" for root in roots}
    result = []
    for path in paths:
        root = next(r for r in roots if _inside(path, r))
        result.append(os.path.normpath(os.path.join(out, named[root], os.path.relpath(path, root))))
    return result


def _identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of what ``path`` names, following links; None when there is nothing to stat."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _identities(path: str) -> list[tuple[int, int]]:
    """The identity of ``path`` (or of its nearest existing parent) and of every folder above it."""
    found = []
    while True:
        identity = _identity(path)
        if identity is not None:
            found.append(identity)
        parent = os.path.dirname(path)
        if parent == path:
            return found
        path = parent


def check_out(out: str, roots: list[str]) -> str:
    """``out`` as a real path, refused where it is, holds or lies inside an indexed folder (by path and by
    device and inode, so a bind mount of the library is refused too), made if missing, and writable."""
    real = os.path.realpath(os.path.expanduser(out))
    above_out = set(_identities(real))  # out itself (if it exists) and every folder above it
    out_identity = _identity(real)
    for root in roots:
        real_root = os.path.realpath(root)
        root_identity = _identity(real_root)
        replace = "the copies would replace the originals"
        if real in (root, real_root) or (out_identity is not None and out_identity == root_identity):
            where, why = "is", replace
        elif _inside(real, root) or _inside(real, real_root) or root_identity in above_out:
            where, why = "lies inside", "the copies would be indexed with the originals"
        elif _inside(root, real) or _inside(real_root, real) or (
            out_identity is not None and out_identity in _identities(real_root)
        ):
            where, why = "holds", replace
        else:
            continue
        raise RedactError(
            f"--out {printable(out)} {where} the indexed folder {printable(root)}: {why}; write them elsewhere"
        )
    if os.path.lexists(real) and not os.path.isdir(real):
        raise RedactError(f"--out {printable(out)} is a file, not a folder")
    try:
        os.makedirs(real, exist_ok=True)
    except OSError as exc:
        raise RedactError(f"cannot write to {printable(out)}: {exc.strerror or exc}") from None
    if not os.access(real, os.W_OK | os.X_OK):
        raise RedactError(f"cannot write to {printable(out)}: permission denied")
    return real


class _Guard:
    """Tells, by device and inode, whether a copy's path would replace an indexed photo, lead into a folder
    of the library, leave ``--out``, or replace a copy this run wrote: a hard link, a symbolic link or a bind
    mount cannot get round a check by path alone. ``photos`` are ``(path, size)`` of every indexed file; a
    file is compared with those of its size only, so a run stats few of them."""

    def __init__(self, out: str, photos: list[tuple[str, int | None]], roots: list[str]):
        self.out = out
        self.by_size: dict[int | None, list[str]] = {}
        for path, size in photos:
            self.by_size.setdefault(size, []).append(path)
        folders: set[str] = set()
        for folder in {os.path.dirname(path) for path, _ in photos}:
            root = next((r for r in roots if _inside(folder, r)), folder)
            while folder not in folders:  # every folder from the photo's up to its root
                folders.add(folder)
                if folder == root or os.path.dirname(folder) == folder:
                    break
                folder = os.path.dirname(folder)
        self.folders = {i for i in map(_identity, folders) if i is not None}
        self.written: set[tuple[int, int]] = set()
        self.targets: set[str] = set()

    def refusal(self, target: str) -> str | None:
        """Why the copy must not be written at ``target``, or None."""
        if target in self.targets:
            return "this run wrote a copy there already"
        folder = os.path.dirname(target)
        existing = folder
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not _inside(os.path.realpath(existing), self.out):
            return "its folder leads out of --out (a symbolic link)"
        step = existing
        while _inside(step, self.out):
            if _identity(step) in self.folders:
                return f"{printable(step)} is a folder of the indexed photos (a bind mount)"
            step = os.path.dirname(step)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"cannot look at it: {exc.strerror or exc}"
        identity = (st.st_dev, st.st_ino)
        if identity in self.written:
            return "this run wrote a copy there already"
        for photo in self.by_size.get(st.st_size, []):
            if _identity(photo) == identity:
                return f"it is the indexed photo {printable(photo)} (a hard link)"
        return None

    def check(self, target: str | os.PathLike[str]) -> None:
        """Raise `RedactError` where `refusal` has a reason."""
        reason = self.refusal(os.fspath(target))
        if reason is not None:
            raise RedactError(f"not writing {printable(os.fspath(target))}: {reason}")

    def wrote(self, target: str) -> None:
        self.targets.add(target)
        identity = _identity(target)
        if identity is not None:
            self.written.add(identity)


# --- Regions ---------------------------------------------------------------------------------------------


def _ramp(length: int, fade: float) -> np.ndarray:
    """1 in the middle, falling linearly to 0 over ``fade`` pixels at both ends."""
    position = np.arange(length, dtype=np.float32) + 0.5
    edge = np.minimum(position, length - position)
    return np.clip(edge / max(fade, 1e-6), 0.0, 1.0)


def box_region(box: Box, size: tuple[int, int], pixelate: bool) -> Region | None:
    """The padded box (`FACE_PADDING`, `OBJECT_PADDING`) of one detector's box (upright photo pixels), fading
    over its padding."""
    x0, y0, x1, y1 = box.left, box.top, box.right, box.bottom
    padding = FACE_PADDING if box.class_id == FACE_CLASS else OBJECT_PADDING
    width, height = size
    pad_x, pad_y = (x1 - x0) * padding, (y1 - y0) * padding
    box = (max(0, math.floor(x0 - pad_x)), max(0, math.floor(y0 - pad_y)),
           min(width, math.ceil(x1 + pad_x)), min(height, math.ceil(y1 + pad_y)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    # The fade stays within the padding, so every pixel of the box itself is covered fully.
    mask = np.outer(_ramp(box[3] - box[1], pad_y), _ramp(box[2] - box[0], pad_x))
    side = min(box[2] - box[0], box[3] - box[1])
    strength = max(MIN_STRENGTH, side / PIXEL_BLOCKS if pixelate else side * FACE_BLUR)
    return Region(box, np.round(mask * 255).astype(np.uint8), strength)


def in_cells(box: Box, size: tuple[int, int], cells: tuple[int, ...]) -> bool:
    """The box reaches one of ``cells`` (0..8) of a photo of ``size``."""
    bounds = cell_bounds(*size)[list(cells)]
    x0, y0, x1, y1 = box.left, box.top, box.right, box.bottom
    return bool(np.any((bounds[:, 0] < x1) & (x0 < bounds[:, 2]) & (bounds[:, 1] < y1) & (y0 < bounds[:, 3])))


def class_map_region(segmentation, classes: frozenset[int], cells: tuple[int, ...], size: tuple[int, int]
                     ) -> Region | None:
    """The pixels of the positions whose top class is in ``classes`` and whose centre lies in ``cells``,
    mapped from the working size to the photo's ``size`` (upright), edges smoothed over half a stride."""
    from PIL import Image, ImageFilter

    geometry = segmentation.geometry
    rows, cols = geometry.rows, geometry.cols
    width, height = size
    sx, sy = width / cols.input_size, height / rows.input_size
    centres_y, centres_x = rows.centers() + 0.5, cols.centers() + 0.5
    chosen = np.isin(segmentation.class_map, list(classes))
    cell_of = ((np.clip(centres_y * 3 // rows.input_size, 0, 2)[:, None] * 3)
               + np.clip(centres_x * 3 // cols.input_size, 0, 2)[None, :]).astype(int)
    chosen &= np.isin(cell_of, list(cells))
    if not chosen.any():
        return None
    spans_y, spans_x = rows.owned_spans() * sy, cols.owned_spans() * sx
    strength = max(MIN_STRENGTH, geometry.stride * min(sx, sy) * MAP_STRENGTH)
    fade = strength / 2
    r, c = np.nonzero(chosen)
    margin = math.ceil(2 * fade)
    box = (max(0, math.floor(spans_x[c, 0].min()) - margin), max(0, math.floor(spans_y[r, 0].min()) - margin),
           min(width, math.ceil(spans_x[c, 1].max()) + margin), min(height, math.ceil(spans_y[r, 1].max()) + margin))
    mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
    for row, col in zip(r, c):
        y0, y1 = (np.round(spans_y[row]) - box[1]).astype(int)
        x0, x1 = (np.round(spans_x[col]) - box[0]).astype(int)
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = 255
    smooth = Image.fromarray(mask).filter(ImageFilter.GaussianBlur(fade / 2))
    return Region(box, np.maximum(np.asarray(smooth), mask), strength)  # fully covered, fading outwards


def stored_box(box: tuple[int, int, int, int], original: images.Original) -> tuple[int, int, int, int]:
    """An upright-frame box in the stored frame of ``original`` (as its EXIF orientation lays it)."""
    from PIL import Image

    x0, y0, x1, y1 = box
    w, h = original.upright_size
    turn = original.to_stored
    T = Image.Transpose
    return {
        None: (x0, y0, x1, y1),
        T.FLIP_LEFT_RIGHT: (w - x1, y0, w - x0, y1),
        T.FLIP_TOP_BOTTOM: (x0, h - y1, x1, h - y0),
        T.ROTATE_180: (w - x1, h - y1, w - x0, h - y0),
        T.TRANSPOSE: (y0, x0, y1, x1),
        T.ROTATE_90: (y0, w - x1, y1, w - x0),
        T.ROTATE_270: (h - y1, x0, h - y0, x1),
        T.TRANSVERSE: (h - y1, w - x1, h - y0, w - x0),
    }[turn]


def cover(original: images.Original, region: Region, pixelate: bool) -> None:
    """Blur (or pixelate) ``region`` of ``original``'s stored pixels in place."""
    from PIL import Image, ImageFilter

    image = original.image
    mask = Image.fromarray(region.mask)
    if original.to_stored is not None:
        mask = mask.transpose(original.to_stored)
    x0, y0, x1, y1 = stored_box(region.box, original)
    margin = 0 if pixelate else math.ceil(2 * region.strength)
    outer = (max(0, x0 - margin), max(0, y0 - margin), min(image.width, x1 + margin), min(image.height, y1 + margin))
    patch = image.crop(outer)
    if pixelate:
        block = max(1, round(region.strength))
        small = patch.resize((max(1, math.ceil(patch.width / block)), max(1, math.ceil(patch.height / block))),
                             Image.Resampling.BOX)
        patch = small.resize(patch.size, Image.Resampling.NEAREST)
    else:
        patch = patch.filter(ImageFilter.GaussianBlur(region.strength))
    inner = patch.crop((x0 - outer[0], y0 - outer[1], x1 - outer[0], y1 - outer[1]))
    image.paste(inner, (x0, y0), mask)


# --- The run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    image_id: int
    path: str
    out: str
    size_bytes: int
    mtime_ns: int
    content_hash: str | None
    terms: tuple  # (spec, cells the term may cover)
    texts: tuple = ()  # the lines of text the query's quoted terms matched (`query.search.Match.texts`)


def redact(
    engine: sa.Engine,
    text: str,
    out: str,
    *,
    pixelate: bool = False,
    force: bool = False,
    keep_location: bool = False,
    min_score: float | None = None,
    load_backbone: Callable[[store.IndexSettings], object] | None = None,
    load_detector: Callable[[], faces.FaceDetector] | None = None,
    on_event: Callable[[object], None] | None = None,
    load_object_detector: Callable[[], detect.ObjectDetector] | None = None,
    within: Callable | None = None,
) -> Summary:
    """Write a copy of every photo matching ``text`` under ``out``, its matched regions covered (module
    docstring). ``load_backbone(settings)`` builds the index's model, needed for ImageNet labels only;
    ``load_detector()`` and ``load_object_detector()`` the detectors the index was built with, needed for
    photos changed since indexing only. ``within`` restricts the photos that may match, as
    `query.search.prepare`'s does (`imgidx serve` redacts the photos picked from its results)."""
    from query import DEFAULT_MIN_SCORE
    from query.search import search

    emit = on_event or (lambda event: None)
    with engine.connect() as conn:
        settings = store.read_settings(conn)
        result = search(conn, text, min_score=DEFAULT_MIN_SCORE if min_score is None else min_score, limit=None,
                        within=within)
        if not result.prepared.compiled.reported:
            raise RedactError(f"'{text}' names nothing to cover (only NOT terms); name a label, e.g. face")
        if not result.matches:
            raise RedactError(f"no photo matches '{text}'; nothing written")
        t = store.tables(conn)
        every_file = sa.select(t.images.c.path, t.images.c.size_bytes)
        indexed = [(restored(path), size) for path, size in conn.execute(every_file)]
        ids = [m.image_id for m in result.matches]
        rows = {}
        for start in range(0, len(ids), store.IN_CHUNK):
            chunk = ids[start : start + store.IN_CHUNK]
            select = sa.select(t.images.c.image_id, t.images.c.size_bytes, t.images.c.mtime_ns, t.images.c.content_hash)
            rows.update({row[0]: row[1:] for row in conn.execute(select.where(t.images.c.image_id.in_(chunk)))})
        stored_boxes = store.boxes_of(conn, ids, t)
    roots = indexed_roots([path for path, _ in indexed])
    real_out = check_out(out, roots)
    paths = [m.path for m in result.matches]
    targets_out = destinations(paths, roots, real_out)
    guard = _Guard(real_out, indexed, roots)
    for dest in targets_out:  # before anything is written
        guard.check(dest)
    existing = [d for d in targets_out if os.path.lexists(d)]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise RedactError(f"{printable(existing[0])} exists{more}; pass --force to replace the copies")
    targets = []
    for match, dest in zip(result.matches, targets_out):
        terms = tuple((tm.spec, tm.spec.cells) for tm in match.terms if tm.score is not None)
        targets.append(_Target(match.image_id, match.path, dest, *rows[match.image_id], terms, match.texts))

    summary = Summary(real_out, pixelate=pixelate)
    searched = detected_classes(settings)
    backbone = None
    emit(Planned(len(targets)))
    for target in targets:
        try:
            data = images.read_file(target.path)
        except ImageReadError as exc:
            gone = not os.path.lexists(target.path)
            summary.skipped += 1
            emit(PhotoNote(target.path, f"skipped {printable(target.path)}: deleted since it was indexed" if gone
                           else f"skipped {exc.shown()}", True))
            continue
        changed = (len(data), _mtime(target.path)) != (target.size_bytes, target.mtime_ns) and (
            hashlib.sha256(data).hexdigest() != target.content_hash
        )
        try:
            original = images.open_original(data, target.path)
        except ImageReadError as exc:
            summary.skipped += 1
            emit(PhotoNote(target.path, f"skipped {exc.shown()}", True))
            continue
        size = original.upright_size
        regions: list[tuple[str, Region]] = []
        photo_boxes = None
        for spec, cells in target.terms:
            if spec.is_text:
                for line in _lines(data, target, changed, spec, size, settings, emit):
                    region = box_region(Box(0, line.left, line.top, line.right, line.bottom, line.confidence), size,
                                        pixelate)
                    if region is not None:
                        regions.append((spec.label, region))
                continue
            if spec.box_classes:
                if photo_boxes is None:
                    photo_boxes = _boxes(data, target, changed, stored_boxes, settings, load_detector,
                                         load_object_detector, emit)
                for box in photo_boxes:
                    if (box.class_id in spec.box_classes and in_cells(box, size, cells)
                            and box_rules.worth_showing(box, spec.threshold)):
                        region = box_region(box, size, pixelate)
                        if region is not None:
                            regions.append((class_name(box.class_id), region))
                            summary.box_labels.add(class_name(box.class_id))
            boxes_alone = bool(spec.box_classes) and set(spec.box_classes) <= searched
            if spec.classifier_classes and not boxes_alone:
                if backbone is None:
                    backbone = (load_backbone or _default_backbone)(settings)
                region = _map_region(backbone, data, target.path, settings, spec, cells, size)
                if region is not None:
                    regions.append((spec.label, region))
        for _, region in regions:
            cover(original, region, pixelate)
        try:
            guard.check(target.out)  # again: folders made meanwhile, or files that appeared
            os.makedirs(os.path.dirname(target.out), exist_ok=True)
            images.save_copy(original, target.out, keep_location=keep_location, before_replace=guard.check)
        except RedactError as exc:
            summary.skipped += 1
            emit(PhotoNote(target.path, f"skipped {printable(target.path)}: {exc.shown()}", True))
            continue
        except OSError as exc:  # a full or read-only disk under --out: the next copies would fail alike
            raise RedactError(f"cannot write {printable(target.out)}: {exc.strerror or exc}; "
                              f"{_copies(summary.written)} written before it") from None
        guard.wrote(target.out)
        summary.written += 1
        for label in dict.fromkeys(label for label, _ in regions):
            summary.photos[label] = summary.photos.get(label, 0) + 1
        for label, _ in regions:
            summary.regions[label] = summary.regions.get(label, 0) + 1
        if not regions:
            emit(PhotoNote(target.path, f"{printable(target.path)}: nothing found to cover, copied as it is", False))
        emit(PhotoDone(target.path, target.out))
    return summary


def detected_classes(settings: store.IndexSettings | None) -> set[int]:
    """The box classes whose boxes the index holds: the face's and the objects', as it looked for them."""
    if settings is None:
        return set()
    return ({FACE_CLASS} if settings.faces else set()) | (set(OBJECT_CLASSES) if settings.objects else set())


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _boxes(data, target: _Target, changed: bool, stored_boxes, settings: store.IndexSettings, load_detector,
           load_object_detector, emit) -> list[Box]:
    """The photo's boxes: as stored, or found again (by the detectors the index has on) in a photo that
    changed since it was indexed."""
    if not changed:
        return list(stored_boxes.get(target.image_id, []))
    decoded = images.decode(data, target.path, settings.working_size)
    face_detector = (load_detector or faces.load_detector)() if settings.faces else None
    object_detector = (load_object_detector or _load_object_detector)() if settings.objects else None
    found = detect.find([faces.detection_pixels(decoded.pixels)], [(decoded.width, decoded.height)], face_detector,
                        object_detector).boxes[0]
    faces_found = sum(box.class_id == FACE_CLASS for box in found)
    what = (f"boxes were found again ({_count(faces_found, 'face')}, {_count(len(found) - faces_found, 'object')})"
            if settings.objects else f"faces were found again ({faces_found})")
    emit(PhotoNote(target.path, f"{printable(target.path)} changed since it was indexed: its {what}", False))
    return list(box_rules.best_first(found))


def _lines(data, target: _Target, changed: bool, spec, size: tuple[int, int], settings, emit) -> list:
    """The lines of text of a quoted term to cover: those the query matched, or read again (`indexer.text`) in a
    photo that changed since it was indexed."""
    from query.search import line_matches

    if not changed:
        return [line for line in target.texts if line_matches(line, spec, *size)]
    from indexer import text

    decoded = images.decode(data, target.path, settings.working_size)
    read = text.Readers()().read(faces.detection_pixels(decoded.pixels), (decoded.width, decoded.height))
    emit(PhotoNote(target.path, f"{printable(target.path)} changed since it was indexed: its text was read again "
                                f"({_count(len(read), 'line')})", False))
    return [line for line in read if line_matches(line, spec, *size)]


def _load_object_detector():
    from indexer import objects

    return objects.load_detector()


def _map_region(backbone, data: bytes, path: str, settings: store.IndexSettings, spec, cells, size) -> Region | None:
    from indexer import inference

    decoded = images.decode(data, path, settings.working_size)
    segmentation = inference.segment(backbone, decoded.pixels, settings.working_size)
    return class_map_region(segmentation, frozenset(spec.classifier_classes), cells, size)


def _default_backbone(settings: store.IndexSettings):
    from indexer.models import load_model

    return load_model(settings.model, None, settings.precision)


def _copies(n: int) -> str:
    return f"{n} cop{'ies' if n != 1 else 'y'}"


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def summary_text(summary: Summary) -> str:
    """One line: how many copies, what was covered in how many photos, and what was skipped. A box class
    counts its boxes ("5 faces", "2 car boxes"), an ImageNet label its photos."""
    covered = [
        (_count(summary.regions[label], "face") if label == "face"
         else _count(summary.regions[label], f"{label} box", f"{label} boxes") if label in summary.box_labels
         else label)
        + f" in {_count(summary.photos[label], 'photo')}"
        for label in summary.regions
    ]
    line = f"wrote {_copies(summary.written)} into {printable(summary.out)}; "
    line += f"{'pixelated' if summary.pixelate else 'blurred'} {', '.join(covered)}" if covered else "nothing found to cover"
    if summary.skipped:
        line += f"; {_count(summary.skipped, 'photo')} skipped"
    return line
