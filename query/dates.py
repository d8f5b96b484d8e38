"""When photos were taken, for searches: a filter on the date (``--taken 2019``, ``--after``, ``--before``), the
orders by date, and how a stored date reads.

A date is the photo's local time as its camera's clock showed it (``images.taken_at``, compared as text:
`indexer.taken.TAKEN_FORMAT` sorts as time does), so "June 2019" means June where the photo was taken.
Photos whose date was not read yet or is unknown (``taken_at`` NULL) match no date filter and come last in
either order by date. A photo without an EXIF date is dated by its file's modification time, marked so
(``taken_source`` 'mtime'), and is filtered and sorted by it.

SQLAlchemy is imported only where a condition is built: `imgidx query`'s options read this module's
constants when the commands are registered, which every `imgidx --help` would otherwise pay for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from indexer.errors import ImgidxError
from indexer.taken import TAKEN_DIGITIZED, TAKEN_EXIF, TAKEN_EXIF_CHANGED, TAKEN_MTIME, TAKEN_NONE

if TYPE_CHECKING:
    import sqlalchemy as sa

#: The forms a date filter takes, as messages and help name them.
DATE_FORMS = "YYYY, YYYY-MM or YYYY-MM-DD"
_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")
#: The orders of matches: by score (best first), or by date taken, oldest or newest first.
SORT_SCORE, SORT_OLDEST, SORT_NEWEST = "score", "oldest", "newest"
SORTS = (SORT_SCORE, SORT_OLDEST, SORT_NEWEST)
#: What each date source means, as `show` and the photo page say it (`indexer.taken.TAKEN_EXIF`...).
SOURCE_NOTES = {
    TAKEN_EXIF: "EXIF DateTimeOriginal",
    TAKEN_DIGITIZED: "EXIF DateTimeDigitized, when it was digitized: no DateTimeOriginal",
    TAKEN_EXIF_CHANGED: "EXIF DateTime, when the file last changed: no DateTimeOriginal",
    TAKEN_MTIME: "the file's modification time: no EXIF date",
}


#: The sources as `imgidx stats` counts them (None: not read yet, a photo indexed before dates), in order.
SOURCE_NAMES = {
    TAKEN_EXIF: "by EXIF", TAKEN_DIGITIZED: "by EXIF DateTimeDigitized", TAKEN_EXIF_CHANGED: "by EXIF DateTime",
    TAKEN_MTIME: "by file time (no EXIF date)", TAKEN_NONE: "without a date", None: "not read yet",
}


class DateFilterError(ImgidxError):
    """A date filter that is not a date of the forms `DATE_FORMS`."""


def period(text: str, option: str) -> tuple[str, str | None]:
    """The span ``text`` (a year, a month or a day) covers, as the stored dates compare: its first moment
    and the first moment after it (None after 9999). ``option`` names where it was given, for the error."""
    match = _DATE.fullmatch(text.strip())
    try:
        if match is None:
            raise ValueError
        year, month, day = (int(part) if part else None for part in match.groups())
        first = date(year, month or 1, day or 1)
        if day is not None:
            after = date.fromordinal(first.toordinal() + 1) if first < date.max else None
        elif month is not None:
            after = date(year + month // 12, month % 12 + 1, 1) if (year, month) < (9999, 12) else None
        else:
            after = date(year + 1, 1, 1) if year < date.max.year else None
    except (ValueError, OverflowError):
        raise DateFilterError(f"{option}: {text.strip()[:40]!r} is not a date; give {DATE_FORMS}") from None
    return first.isoformat(), after.isoformat() if after is not None else None


@dataclass(frozen=True)
class DateFilter:
    """Photos taken in the span ``taken`` names, from the first day of ``after`` on, and before the first
    day of ``before`` (any of them may be left out; each as `period` reads it)."""

    taken: str = ""
    after: str = ""
    before: str = ""

    def __bool__(self) -> bool:
        return bool(self.taken or self.after or self.before)

    def bounds(self, names: tuple[str, str, str] = ("--taken", "--after", "--before")) -> tuple[str | None, str | None]:
        """The first moment a photo may be taken and the first it may not (None: no bound); a
        `DateFilterError` naming the option (``names``) of a value that is no date."""
        low = high = None
        if self.taken:
            low, high = period(self.taken, names[0])
        if self.after:
            start, _ = period(self.after, names[1])
            low = max(low, start) if low else start
        if self.before:
            start, _ = period(self.before, names[2])
            high = min(high, start) if high else start
        return low, high

    def within(self, names: tuple[str, str, str] = ("--taken", "--after", "--before")):
        """The restriction as `query.search.prepare`'s ``within``: a condition on ``images.taken_at``, which
        its index (``images_taken``) serves. Checked now (`bounds`)."""
        import sqlalchemy as sa

        low, high = self.bounds(names)

        def taken(images: sa.FromClause) -> sa.ColumnElement:
            column = images.c.taken_at
            tests = [column >= low] if low else [column.is_not(None)]
            return sa.and_(*tests, *([column < high] if high else []))

        return taken


def both(*conditions):
    """Several ``within`` restrictions (None left out) as one, or None."""
    import sqlalchemy as sa

    kept = [c for c in conditions if c is not None]
    if len(kept) <= 1:
        return kept[0] if kept else None
    return lambda images: sa.and_(*(condition(images) for condition in kept))


def order_by_date(images: sa.FromClause, sort: str) -> list[sa.ColumnElement]:
    """The ORDER BY terms of ``sort`` (`SORT_OLDEST`, `SORT_NEWEST`): by date taken, undated photos last."""
    column = images.c.taken_at
    return [(column.desc() if sort == SORT_NEWEST else column.asc()).nulls_last()]


def sources_text(counts: dict[str | None, int]) -> str:
    """How many photos have their date from each source: ``3 by EXIF, 1 by file time (no EXIF date)``."""
    return ", ".join(f"{counts[source]} {name}" for source, name in SOURCE_NAMES.items() if counts.get(source))


def taken_text(at: str | None, offset: str | None, source: str | None) -> str:
    """When a photo was taken, as people read it, with where that comes from: ``2019-06-01 14:03:27 +02:00
    (EXIF DateTimeOriginal)``."""
    if source is None:
        return "not read yet (indexed before imgidx stored dates; the next imgidx index run reads it)"
    if at is None:
        return "unknown (no EXIF date, and the file's time is a placeholder)"
    shown = at.replace("T", " ") + (f" {offset}" if offset else "")
    return f"{shown} ({SOURCE_NOTES.get(source, source)})"
