"""Decoding photos as people have them; the only module that opens image files.

Every decoded image is RGB ``uint8`` with EXIF orientation already applied, so cells and regions are where
a person looking at the photo sees them. Large JPEGs are decoded at a reduced size (libjpeg's DCT scaling,
Pillow's ``draft``) that still covers the working size, which is most of the decoding cost saved.
"""

from __future__ import annotations

import io
import math
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from indexer.errors import ImageReadError
from indexer.names import printable
from indexer.taken import (
    TAKEN_DIGITIZED, TAKEN_EXIF, TAKEN_EXIF_CHANGED, TAKEN_NONE, Taken, camera_name, exif_date, exif_offset,
    with_fallback,
)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".dib", ".gif"}
)

#: Refuse images above this many pixels, from their header, before decoding them (decompression bombs);
#: 300 MP admits 108 and 200 MP phone photos and a 20000x15000 panorama. JPEGs are decoded reduced, so
#: their memory stays small even near the limit.
MAX_PIXELS = 300_000_000
#: Pillow's own guard warns from 89.5 MP through the process-wide, not thread-safe warnings filters; the
#: check against `MAX_PIXELS` in `decode` replaces it.
Image.MAX_IMAGE_PIXELS = None

#: Transparent areas are shown on white, as image viewers do.
BACKGROUND_RGB = (255, 255, 255)

#: The largest value of 16-bit samples; they are scaled to 8 bits by this over 255.
UINT16_MAX = 65535

#: Longest side over shortest side beyond which the working image is cut down (panoramas).
MAX_ASPECT = 2.0

EXIF_ORIENTATION = 0x0112
#: EXIF orientations 5-8 turn the picture a quarter, swapping width and height.
QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})



# --- When a photo was taken, and with which camera (EXIF) ---------------------------------------------

#: EXIF's date tags, best first, each with its offset tag and the source it is recorded as (`indexer.taken`).
EXIF_DATES = (
    (ExifTags.Base.DateTimeOriginal, ExifTags.Base.OffsetTimeOriginal, TAKEN_EXIF),
    (ExifTags.Base.DateTimeDigitized, ExifTags.Base.OffsetTimeDigitized, TAKEN_DIGITIZED),
    (ExifTags.Base.DateTime, ExifTags.Base.OffsetTime, TAKEN_EXIF_CHANGED),
)


def taken_of(exif: Image.Exif) -> Taken | None:
    """The date and camera an EXIF block records, or None (no usable date: see `taken.with_fallback`); a date
    other than DateTimeOriginal is marked as what it is (`EXIF_DATES`). A malformed block is no date: the
    photo is still a photo, and is labelled."""
    try:
        block = dict(exif)
    except Exception:  # noqa: BLE001
        return None
    try:
        block.update(exif.get_ifd(ExifTags.IFD.Exif))
    except Exception:  # noqa: BLE001 (the Exif block's own tags unreadable: IFD0's may still say something)
        pass
    camera = camera_name(block.get(ExifTags.Base.Make), block.get(ExifTags.Base.Model))
    for date_tag, offset_tag, source in EXIF_DATES:
        at = exif_date(block.get(date_tag))
        if at is not None:
            return Taken(at, exif_offset(block.get(offset_tag)), source, camera)
    return Taken(None, None, TAKEN_NONE, camera) if camera else None


def _exif_block(image: Image.Image, header_only: bool) -> Image.Exif:
    """``image``'s EXIF; with ``header_only``, a PNG's only if its header holds it (Pillow would decode the
    whole picture to look for an eXIf chunk after it)."""
    if header_only and image.format == "PNG":
        exif = Image.Exif()
        if image.info.get("exif"):
            exif.load(image.info["exif"])
        return exif
    return image.getexif()


def read_taken(path: str | Path, mtime_ns: int) -> Taken:
    """The date and camera of the photo at ``path`` from its header alone (nothing decoded; a JPEG is read
    up to its first frame), falling back to ``mtime_ns`` (`taken.with_fallback`); `ImageReadError` naming it for a
    file that cannot be read or is no image. For photos indexed before dates were stored."""
    name = printable(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageReadError(f"{name}: not a regular file")
        with open(fd, "rb", closefd=False) as file, Image.open(file) as image:
            return with_fallback(taken_of(_exif_block(image, header_only=True)), mtime_ns)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image (unknown format)") from None
    except Exception as exc:  # noqa: BLE001 (a strange header must not stop the run)
        raise ImageReadError(f"{name}: cannot read its header ({type(exc).__name__})") from None
    finally:
        os.close(fd)


def header_taken(data: bytes) -> Taken | None:
    """The date and camera in the header of ``data`` (a file's bytes), without decoding it; None for no
    date or no image: content the index knows already, whose copy needs its date."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return taken_of(_exif_block(image, header_only=True))
    except Exception:  # noqa: BLE001 (no date is the answer for whatever is no readable image)
        return None


@dataclass(frozen=True)
class DecodedImage:
    """Pixels ready for a network, the size of the original as a person sees it, and when it was taken
    (None: no EXIF date; `taken.with_fallback` gives the file's time)."""

    pixels: np.ndarray
    width: int
    height: int
    taken: Taken | None = None


def read_file(path: str | Path) -> bytes:
    """The file's bytes, or an `ImageReadError` naming it (missing, a folder, no permission, not a regular
    file). Opened without blocking, so a FIFO or a device is refused instead of waited on."""
    name = printable(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageReadError(f"{name}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageReadError(f"{name}: is a folder, not an image")
        if not stat.S_ISREG(mode):
            raise ImageReadError(f"{name}: not a regular file ({file_kind(mode)})")
        with open(fd, "rb", closefd=False) as file:
            return file.read()
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages."""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def load(path: str | Path, min_side: int | None = None) -> DecodedImage:
    """Read and decode one file (see `decode`)."""
    return decode(read_file(path), str(path), min_side)


def decode(data: bytes, name: str, min_side: int | None = None) -> DecodedImage:
    """Decode ``data`` (the bytes of file ``name``) to oriented RGB.

    With ``min_side`` a JPEG may be decoded reduced, keeping its shorter side at least ``min_side``.
    Raises `ImageReadError` naming ``name`` for anything that is not a decodable image.
    """
    name = printable(name)
    if not data:
        raise ImageReadError(f"{name}: empty file")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageReadError(
                f"{name}: too large ({width}x{height}, {width * height / 1e6:.0f} MP; "
                f"the limit is {MAX_PIXELS / 1e6:.0f} MP)"
            )
        if min_side and image.format == "JPEG":
            scale = min_side / min(width, height)
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        exif = image.getexif()
        turned = exif.get(EXIF_ORIENTATION, 1) in QUARTER_TURN_ORIENTATIONS
        taken = taken_of(exif)
        ImageOps.exif_transpose(image, in_place=True)
        pixels = _to_rgb(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image (unknown format)") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{name}: too large (a possible decompression bomb)") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{name}: corrupt or truncated image ({reason})") from None
    return DecodedImage(pixels, height, width, taken) if turned else DecodedImage(pixels, width, height, taken)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 from any Pillow mode: palette, grey, alpha, CMYK, 16-bit and float samples."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        grey = np.clip(values * (255 / UINT16_MAX) if values.max() > 255 else values, 0, 255)
        return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max() <= 1.0 else 1.0
        grey = np.clip(values * scale, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


# --- Copies of a photo with some pixels changed (`indexer.redact`) ------------------------------------

#: EXIF orientation -> the transpose that turns the stored pixels upright (as `ImageOps.exif_transpose`).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: The transpose that undoes each one (the quarter turns undo each other; the rest undo themselves).
UNDONE_BY = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}
#: The EXIF tags that point to the GPS block and to the Exif block.
EXIF_GPS_IFD = 0x8825
EXIF_IFD = 0x8769
#: The camera maker's notes (in the Exif block): an undocumented blob in which many phones and cameras
#: record the position too, so an edited copy leaves it out with the GPS block (`save_copy`).
EXIF_MAKER_NOTE = 0x927C
#: PNG text chunks that hold XMP, which has fields for the position and the place's name.
PNG_LOCATION_KEYS = frozenset({"XML:com.adobe.xmp"})
#: TIFF tags Pillow copies into a saved TIFF that may hold the place: XMP, IPTC (city, sublocation) and
#: Photoshop's resources (which carry IPTC).
TIFF_LOCATION_TAGS = (700, 33723, 34377)
#: Permissions of a copy before the umask, as ``open`` gives a new file.
NEW_FILE_MODE = 0o666
#: A copy is written under a hidden name ending so, then renamed into place.
PARTIAL_SUFFIX = ".imgidx-partial"
#: Modes the editing filters take as they are; others are edited as RGB(A) and saved so.
EDITABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "CMYK"})


@dataclass
class Original:
    """A photo opened to write an edited copy: its stored pixels (not turned upright), in the file's format,
    with what saving the copy needs to keep (quantization tables, EXIF, ICC profile, XMP)."""

    image: Image.Image
    format: str
    orientation: int

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as a person sees the photo, the frame of every stored box."""
        width, height = self.image.size
        return (height, width) if self.orientation in QUARTER_TURN_ORIENTATIONS else (width, height)

    @property
    def to_stored(self) -> Image.Transpose | None:
        """The transpose that takes the upright frame back to the stored one (None: they are the same)."""
        turn = UPRIGHT.get(self.orientation)
        return None if turn is None else UNDONE_BY.get(turn, turn)


def open_original(data: bytes, name: str) -> Original:
    """``data`` (the bytes of file ``name``) decoded in full, for an edited copy; `ImageReadError` as `decode`."""
    name = printable(name)
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageReadError(f"{name}: too large ({width}x{height}; the limit is {MAX_PIXELS / 1e6:.0f} MP)")
        image.load()
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        fmt = image.format
        if image.mode not in EDITABLE_MODES:
            has_alpha = image.mode in ("PA", "La", "RGBa", "I;16", "1") or "transparency" in image.info
            edited = image.convert("RGBA" if has_alpha and image.mode != "I;16" else "RGB")
            edited.info = dict(image.info)
            image = edited
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image (unknown format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{name}: corrupt or truncated image ({reason})") from None
    return Original(image, fmt, orientation)


def save_copy(original: Original, path: str | Path, keep_location: bool = False,
              before_replace: Callable[[Path], None] | None = None) -> None:
    """Write ``original`` (edited) to ``path`` in its format: a JPEG with its own quantization tables and
    chroma subsampling (the quality it had), EXIF, ICC profile and orientation. What may tell where the
    photo was taken (EXIF's GPS block and maker notes, XMP, IPTC, a JPEG's free-text comment) is left out
    unless ``keep_location``.

    The copy is written to a new file of a fresh name in ``path``'s folder (created exclusively, so no
    existing file, say a hard link to an original, is ever opened for writing), then ``before_replace(path)``
    may still refuse, and only then is it renamed onto ``path``: an interrupted write leaves no half file,
    and what ``path`` named before is replaced, never written into."""
    image = original.image
    params: dict = {}
    exif = image.getexif()
    if not keep_location:
        _strip_location(exif)
    if exif:
        params["exif"] = exif.tobytes()
    if image.info.get("icc_profile"):
        params["icc_profile"] = image.info["icc_profile"]
    if image.info.get("dpi"):
        params["dpi"] = image.info["dpi"]
    xmp = image.info.get("xmp") if keep_location else None
    fmt = original.format
    if fmt in ("JPEG", "MPO"):
        from PIL import JpegImagePlugin

        fmt = "JPEG"
        params.update(qtables=getattr(image, "quantization", None) or None, progressive=bool(image.info.get("progressive")))
        params["subsampling"] = JpegImagePlugin.get_sampling(image)
        params["comment"] = image.info.get("comment", b"") if keep_location else b""  # Pillow copies it otherwise
        if xmp:
            params["xmp"] = xmp
    elif fmt == "PNG":
        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        for key, value in getattr(image, "text", {}).items():
            if keep_location or key not in PNG_LOCATION_KEYS:
                text.add_text(key, value)
        params["pnginfo"] = text
    elif fmt == "WEBP":
        params["lossless"] = True  # WebP's quality cannot be read back: nothing lost beyond what was
        if xmp:
            params["xmp"] = xmp
    elif fmt == "TIFF":
        params["compression"] = image.info.get("compression", "raw")
        if not keep_location:  # Pillow copies these from the file's own tags too
            for tag in TIFF_LOCATION_TAGS:
                getattr(image, "tag_v2", {}).pop(tag, None)
    elif fmt == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    target = Path(path)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX)
    try:
        os.fchmod(handle, NEW_FILE_MODE & ~_umask())
        with os.fdopen(handle, "wb") as out:
            image.save(out, fmt, **params)
        if before_replace is not None:
            before_replace(target)
        os.replace(partial, target)
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)


def _strip_location(exif: Image.Exif) -> None:
    """Take the GPS block, the maker notes, and XMP and IPTC (which a TIFF's EXIF holds) out of ``exif``."""
    for tag in (EXIF_GPS_IFD, *TIFF_LOCATION_TAGS):
        exif.pop(tag, None)
    if EXIF_IFD in exif:
        exif.get_ifd(EXIF_IFD).pop(EXIF_MAKER_NOTE, None)


def _umask() -> int:
    """The process's umask (read by setting it, as POSIX offers no other way; imgidx sets it nowhere else)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def working_shape(height: int, width: int, size: int, multiple: int = 1) -> tuple[int, int]:
    """The network input shape for an image: shorter side ``size``, aspect kept up to `MAX_ASPECT`.

    Each side is rounded to a multiple of ``multiple`` (the network's stride) so that images of the
    common aspect ratios fall into a few shapes that batch together, and map positions tile evenly.
    """
    short, long = sorted((height, width))
    long_side = size * min(long / short, MAX_ASPECT)
    short_px = max(multiple, round(size / multiple) * multiple)
    long_px = max(short_px, round(long_side / multiple) * multiple)
    return (short_px, long_px) if height <= width else (long_px, short_px)


def scaled_shape(shape: tuple[int, int], factor: float, multiple: int, smallest: int) -> tuple[int, int]:
    """``shape`` scaled by ``factor``, each side a multiple of ``multiple`` and at least ``smallest``."""
    return tuple(max(smallest, multiple, round(side * factor / multiple) * multiple) for side in shape)


def resize(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 pixels to ``shape = (height, width)`` (antialiased when shrinking)."""
    if pixels.shape[:2] == tuple(shape):
        return pixels
    image = Image.fromarray(pixels)
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR, reducing_gap=2.0))
