"""Thumbnails of indexed photos, made on demand and kept in the cache folder.

A photo is read only as the index knows it: by the path, size, modification time and content hash stored
for it (`Original`). A file whose size or time changed is hashed again, so a photo that was edited,
replaced (also by a symlink to another file) or removed since indexing is refused with a
`PhotoChangedError` or an `ImageReadError` instead of being shown as the indexed one. Decoding goes through
`indexer.images`, so EXIF orientation, every pixel mode and the decompression-bomb guard apply as when
indexing. The cache is keyed by content hash and size: a moved photo keeps its thumbnails, an edited one
gets new ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from indexer import images
from indexer.errors import ImageReadError
from indexer.cache import cache_dir
from indexer.names import printable

#: The longest side of the thumbnails a caller may ask for: the result grid's and a photo page's.
SIZES = (320, 1280)
JPEG_QUALITY = 82
CACHE_SUBDIR = "thumbnails"


class PhotoChangedError(ImageReadError):
    """The file at an indexed path no longer has the content that was indexed."""


@dataclass(frozen=True)
class Original:
    """An indexed photo as the index recorded it."""

    path: str
    size_bytes: int
    mtime_ns: int
    content_hash: str


def thumbnail_folder() -> Path:
    """Where thumbnails are kept: ``thumbnails/`` in imgidx's cache (``$IMGIDX_CACHE_DIR`` moves it)."""
    return cache_dir() / CACHE_SUBDIR


def unchanged(original: Original) -> bool:
    """The file still has the size and time it was indexed with (what the indexer's own diff trusts)."""
    try:
        stat = os.stat(original.path)
    except OSError:
        return False
    return stat.st_size == original.size_bytes and stat.st_mtime_ns == original.mtime_ns


def read_original(original: Original) -> bytes:
    """The photo's bytes, checked against its content hash; `ImageReadError` (missing, unreadable) or
    `PhotoChangedError` otherwise."""
    data = images.read_file(original.path)
    if hashlib.sha256(data).hexdigest() != original.content_hash:
        raise PhotoChangedError(f"{printable(original.path)}: changed since it was indexed")
    return data


def cached_path(content_hash: str, size: int, folder: Path | None = None) -> Path:
    folder = folder if folder is not None else thumbnail_folder()
    return folder / content_hash[:2] / f"{content_hash}-{size}.jpg"


def cached(original: Original, size: int, folder: Path | None = None) -> Path | None:
    """The cached thumbnail, while the file is as it was indexed (`unchanged`); None otherwise."""
    target = cached_path(original.content_hash, size, folder)
    return target if target.exists() and unchanged(original) else None


def thumbnail(original: Original, size: int, folder: Path | None = None) -> Path:
    """The cached JPEG of ``original`` whose longest side is at most ``size`` (one of `SIZES`), made first
    if needed. A cached one is used only while the file is unchanged (`cached`, else its hash checked)."""
    if size not in SIZES:
        raise ValueError(f"thumbnail size {size} is not one of {SIZES}")
    found = cached(original, size, folder)
    if found is not None:
        return found
    target = cached_path(original.content_hash, size, folder)
    data = read_original(original)
    if target.exists():
        return target
    picture = Image.fromarray(images.decode(data, original.path, min_side=size).pixels)
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=JPEG_QUALITY)
    _write_atomically(target, buffer.getvalue())
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a thumbnail."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def media_type(data: bytes) -> str | None:
    """The MIME type of an image's bytes, from its header; None when Pillow does not know the format."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            return Image.MIME.get(picture.format or "")
    except (OSError, ValueError, SyntaxError):
        return None
