"""When a photo was taken and with which camera, as the index stores it (``images.taken_*``, ``camera``): the
sources a date comes from, the stored form, and the fallback to the file's time.

A leaf below the modules that use it: `indexer.images` reads EXIF into a `Taken`, the run and the writer store
it, and `query.dates` and `serve` name its sources, neither of which may import numpy with `indexer.images`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from indexer.names import printable

#: Where a photo's date comes from (``images.taken_source``): EXIF's DateTimeOriginal (when the shutter
#: fired), DateTimeDigitized (when it was stored or scanned), IFD0's DateTime (when the file last changed, by
#: EXIF's definition), the file's modification time (no EXIF date), or nothing usable.
TAKEN_EXIF, TAKEN_DIGITIZED, TAKEN_EXIF_CHANGED, TAKEN_MTIME, TAKEN_NONE = (
    "exif", "exif-digitized", "exif-datetime", "mtime", "none")
#: How a date is stored: the photo's local time, as its camera's clock showed it, to the second.
TAKEN_FORMAT = "%Y-%m-%dT%H:%M:%S"
#: A modification time before this is no date but a tool's placeholder (archives and reproducible builds
#: write 0 or 1): such a photo has no date (`TAKEN_NONE`).
EARLIEST_MTIME = datetime(1971, 1, 1, tzinfo=timezone.utc)
#: The camera as stored: EXIF's Make and Model, cut to this many characters.
CAMERA_CHARS = 80
#: EXIF writes "2019:06:01 14:03:27" (some writers use dashes; "0000:00:00 00:00:00" means unknown).
_EXIF_DATE = re.compile(r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"\s*([+-])(\d{2}):(\d{2})\s*$")
#: The largest offset from UTC a clock shows (Kiribati's +14:00).
MAX_OFFSET_HOURS = 14


@dataclass(frozen=True)
class Taken:
    """When a photo was taken (``at``: local time as `TAKEN_FORMAT`, its UTC ``offset`` "+02:00" where known),
    where that comes from (``source``: `TAKEN_EXIF`...), and the ``camera`` (EXIF's Make and Model)."""

    at: str | None
    offset: str | None
    source: str
    camera: str | None = None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", " ").strip() if isinstance(value, str) else ""


def exif_date(value) -> str | None:
    """An EXIF date value as stored (`TAKEN_FORMAT`), or None for one that is no date."""
    match = _EXIF_DATE.match(_text(value))
    if match is None:
        return None
    try:
        return datetime(*map(int, match.groups())).strftime(TAKEN_FORMAT)
    except ValueError:  # 0000:00:00, month 13...
        return None


def exif_offset(value) -> str | None:
    """An EXIF offset value ("+02:00"), or None for one that is no offset."""
    match = _EXIF_OFFSET.match(_text(value))
    if match is None or int(match.group(2)) > MAX_OFFSET_HOURS or int(match.group(3)) >= 60:
        return None
    return f"{match.group(1)}{match.group(2)}:{match.group(3)}"


def camera_name(make, model) -> str | None:
    """"Canon EOS 5D" from Make "Canon" and Model "Canon EOS 5D"; "Apple iPhone 12" from "Apple", "iPhone 12"."""
    make, model = " ".join(_text(make).split()), " ".join(_text(model).split())
    if make and model.lower().startswith(make.split()[0].lower()):
        make = ""
    camera = " ".join(part for part in (make, model) if part)
    return printable(camera[:CAMERA_CHARS]) or None


def with_fallback(taken: Taken | None, mtime_ns: int) -> Taken:
    """``taken`` where it has a date; else the file's modification time (``mtime_ns``) as this machine's
    local time, marked `TAKEN_MTIME`, or no date at all (`TAKEN_NONE`) for a placeholder time."""
    if taken is not None and taken.at is not None:
        return taken
    camera = taken.camera if taken is not None else None
    try:
        moment = datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return Taken(None, None, TAKEN_NONE, camera)
    if moment < EARLIEST_MTIME:
        return Taken(None, None, TAKEN_NONE, camera)
    local = moment.astimezone()
    offset = local.strftime("%z")
    return Taken(local.strftime(TAKEN_FORMAT), f"{offset[:3]}:{offset[3:]}", TAKEN_MTIME, camera)
