"""`imgidx redact`: copies of the photos a query matches, with what it matched blurred or pixelated.

The seed's Street View case: blur the faces of a collection before publishing it, "but only faces and not
other content". For each photo that matches, the regions of every term the query reports are covered:

- a face term (``face``, and the faces of ``person``): each face box of the term's region, padded by
  `FACE_PADDING` of its size on every side, fading out over that padding, so the face itself is covered
  whole;
- a term of ImageNet classes (``license plate``, ``screen``): the model runs on the photo again, and the
  class-map positions whose top class is one of the term's (in the term's region) are covered, each
  position over the pixels it owns (`indexer.geometry.AxisGeometry.owned_spans`), the edges smoothed over
  half a stride.

Originals are never written: the copies go under ``--out``, which may not lie inside a folder of indexed
photos, keeping each photo's path below its indexed folder. An existing copy is replaced only with
``force``. Each copy keeps its format, JPEG quantization (its quality), EXIF (without GPS with
``strip_gps``) and orientation: the regions are drawn in the stored pixels. A photo that changed since it
was indexed has its faces found again (a changed photo's stored boxes would be stale); a photo deleted
since is skipped, with a message. Refusals that concern the whole run (no match, ``--out`` inside the
library or not writable, copies that exist) come before anything is written.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sqlalchemy as sa

from indexer import faces, images, store
from indexer.errors import ImageReadError, ImgidxError
from indexer.geometry import cell_bounds
from indexer.names import printable, restored

#: A face box grows by this share of its width and height on every side (detector boxes stop at the
#: eyebrows and the cheeks: hair and ears would show).
FACE_PADDING = 0.25
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


def destinations(paths: list[str], roots: list[str], out: str) -> list[str]:
    """Where each photo's copy goes: its path below its root, under ``out`` (below the root's name too
    when the library has several roots)."""
    result = []
    for path in paths:
        root = next(r for r in roots if _inside(path, r))
        relative = os.path.relpath(path, root)
        result.append(os.path.join(out, os.path.basename(root) or "root", relative) if len(roots) > 1
                      else os.path.join(out, relative))
    return result


def check_out(out: str, roots: list[str]) -> str:
    """``out`` as a real path, refused inside an indexed folder, made if missing, and writable."""
    real = os.path.realpath(os.path.expanduser(out))
    for root in roots:
        if _inside(real, root) or _inside(real, os.path.realpath(root)):
            raise RedactError(
                f"--out {printable(out)} lies inside the indexed folder {printable(root)}: the copies would be "
                "indexed with the originals; write them elsewhere"
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


# --- Regions ---------------------------------------------------------------------------------------------


def _ramp(length: int, fade: float) -> np.ndarray:
    """1 in the middle, falling linearly to 0 over ``fade`` pixels at both ends."""
    position = np.arange(length, dtype=np.float32) + 0.5
    edge = np.minimum(position, length - position)
    return np.clip(edge / max(fade, 1e-6), 0.0, 1.0)


def face_region(face, size: tuple[int, int], pixelate: bool) -> Region | None:
    """The padded box of one face (``(x0, y0, x1, y1, ...)``, upright photo pixels), fading over its padding."""
    x0, y0, x1, y1 = face[:4]
    width, height = size
    pad_x, pad_y = (x1 - x0) * FACE_PADDING, (y1 - y0) * FACE_PADDING
    box = (max(0, math.floor(x0 - pad_x)), max(0, math.floor(y0 - pad_y)),
           min(width, math.ceil(x1 + pad_x)), min(height, math.ceil(y1 + pad_y)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    # The fade stays within the padding, so every pixel of the face itself is covered fully.
    mask = np.outer(_ramp(box[3] - box[1], pad_y), _ramp(box[2] - box[0], pad_x))
    side = min(box[2] - box[0], box[3] - box[1])
    strength = max(MIN_STRENGTH, side / PIXEL_BLOCKS if pixelate else side * FACE_BLUR)
    return Region(box, np.round(mask * 255).astype(np.uint8), strength)


def in_cells(face, size: tuple[int, int], cells: tuple[int, ...]) -> bool:
    """The face box reaches one of ``cells`` (0..8) of a photo of ``size``."""
    bounds = cell_bounds(*size)[list(cells)]
    x0, y0, x1, y1 = face[:4]
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


def redact(
    engine: sa.Engine,
    text: str,
    out: str,
    *,
    pixelate: bool = False,
    force: bool = False,
    strip_gps: bool = False,
    min_score: float | None = None,
    load_backbone: Callable[[store.IndexSettings], object] | None = None,
    load_detector: Callable[[], faces.FaceDetector] | None = None,
    on_event: Callable[[object], None] | None = None,
) -> Summary:
    """Write a copy of every photo matching ``text`` under ``out``, its matched regions covered (module
    docstring). ``load_backbone(settings)`` builds the index's model, needed for ImageNet labels only;
    ``load_detector()`` the face detector, needed for photos changed since indexing only."""
    from query import DEFAULT_MIN_SCORE
    from query.search import search

    emit = on_event or (lambda event: None)
    with engine.connect() as conn:
        settings = store.read_settings(conn)
        result = search(conn, text, min_score=DEFAULT_MIN_SCORE if min_score is None else min_score, limit=None)
        if not result.prepared.compiled.reported:
            raise RedactError(f"'{text}' names nothing to cover (only NOT terms); name a label, e.g. face")
        if not result.matches:
            raise RedactError(f"no photo matches '{text}'; nothing written")
        t = store.tables(conn)
        all_paths = [restored(p) for p in conn.execute(sa.select(t.images.c.path).where(t.images.c.error.is_(None))).scalars()]
        ids = [m.image_id for m in result.matches]
        rows = {}
        for start in range(0, len(ids), store.IN_CHUNK):
            chunk = ids[start : start + store.IN_CHUNK]
            select = sa.select(t.images.c.image_id, t.images.c.size_bytes, t.images.c.mtime_ns, t.images.c.content_hash)
            rows.update({row[0]: row[1:] for row in conn.execute(select.where(t.images.c.image_id.in_(chunk)))})
        stored_faces = store.faces_of(conn, ids, t)
    roots = indexed_roots(all_paths)
    real_out = check_out(out, roots)
    paths = [m.path for m in result.matches]
    targets_out = destinations(paths, roots, real_out)
    existing = [d for d in targets_out if os.path.lexists(d)]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise RedactError(f"{printable(existing[0])} exists{more}; pass --force to replace the copies")
    targets = []
    for match, dest in zip(result.matches, targets_out):
        terms = tuple((tm.spec, tm.spec.cells) for tm in match.terms if tm.score is not None)
        targets.append(_Target(match.image_id, match.path, dest, *rows[match.image_id], terms))

    summary = Summary(real_out, pixelate=pixelate)
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
        photo_faces = None
        for spec, cells in target.terms:
            if spec.stored_classes:
                if photo_faces is None:
                    photo_faces = _faces(data, target, changed, stored_faces, load_detector, emit)
                for face in photo_faces:
                    region = face_region(face, size, pixelate) if in_cells(face, size, cells) else None
                    if region is not None:
                        regions.append(("face", region))
            if spec.model_classes:
                if backbone is None:
                    backbone = (load_backbone or _default_backbone)(settings)
                region = _map_region(backbone, data, target.path, settings, spec, cells, size)
                if region is not None:
                    regions.append((spec.label, region))
        for _, region in regions:
            cover(original, region, pixelate)
        os.makedirs(os.path.dirname(target.out), exist_ok=True)
        images.save_copy(original, target.out, strip_gps=strip_gps)
        summary.written += 1
        for label in dict.fromkeys(label for label, _ in regions):
            summary.photos[label] = summary.photos.get(label, 0) + 1
        for label, _ in regions:
            summary.regions[label] = summary.regions.get(label, 0) + 1
        if not regions:
            emit(PhotoNote(target.path, f"{printable(target.path)}: nothing found to cover, copied as it is", False))
        emit(PhotoDone(target.path, target.out))
    return summary


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _faces(data, target: _Target, changed: bool, stored_faces, load_detector, emit) -> list:
    """The photo's faces: as stored, or found again in a photo that changed since it was indexed."""
    if not changed:
        return [(f.x0, f.y0, f.x1, f.y1, f.confidence) for f in stored_faces.get(target.image_id, [])]
    decoded = images.decode(data, target.path, faces.DETECTION_SIDE)
    detector = (load_detector or faces.load_detector)()
    found = detector.detect(faces.detection_pixels(decoded.pixels), (decoded.width, decoded.height))
    emit(PhotoNote(target.path, f"{printable(target.path)} changed since it was indexed: its faces were found again "
                                f"({len(found)})", False))
    return list(found)


def _map_region(backbone, data: bytes, path: str, settings: store.IndexSettings, spec, cells, size) -> Region | None:
    from indexer import inference

    decoded = images.decode(data, path, settings.working_size)
    segmentation = inference.segment(backbone, decoded.pixels, settings.working_size)
    return class_map_region(segmentation, frozenset(spec.model_classes), cells, size)


def _default_backbone(settings: store.IndexSettings):
    from indexer.models import load_model

    return load_model(settings.model, None, settings.precision)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def summary_text(summary: Summary) -> str:
    """One line: how many copies, what was covered in how many photos, and what was skipped."""
    covered = [
        (_count(summary.regions[label], "face") if label == "face" else label)
        + f" in {_count(summary.photos[label], 'photo')}"
        for label in summary.regions
    ]
    line = f"wrote {summary.written} cop{'ies' if summary.written != 1 else 'y'} into {printable(summary.out)}; "
    line += f"{'pixelated' if summary.pixelate else 'blurred'} {', '.join(covered)}" if covered else "nothing found to cover"
    if summary.skipped:
        line += f"; {_count(summary.skipped, 'photo')} skipped"
    return line
