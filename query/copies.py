"""Identical photos among matches: files with the same content hash are one picture kept at several paths.

The index keeps one row per path, and the indexer gives a copy the labels of its original (by hash), so
every copy of a matching photo matches too, with the same score. Grouping works on the matches at hand
(one page): ``--limit``, ``--offset`` and the total still count paths, so a photo whose copies fall on two
pages appears on both. Which output shows what:

- the table and ``--grid`` keep a line per path and mark a later copy "same photo as #N";
- ``--json`` keeps one object per path, with ``sha256`` and ``copies`` (matches printed with that content);
- ``--paths`` lists every path;
- ``--html`` (and a web page) shows one card per picture, listing its paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from query.search import Match


@dataclass(frozen=True)
class Photo:
    """One picture among the matches: its best-ranked match first, then its copies in rank order."""

    matches: tuple[Match, ...]

    @property
    def best(self) -> Match:
        return self.matches[0]

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.matches]

    @property
    def copies(self) -> int:
        return len(self.matches)


def group_copies(matches: Iterable[Match]) -> list[Photo]:
    """The matches as pictures, in the order of each picture's best match; a match without a content hash
    (never the case for an indexed photo) stands alone."""
    groups: dict[object, list[Match]] = {}
    for match in sorted(matches, key=lambda m: m.rank):
        key = match.content_hash if match.content_hash is not None else ("no hash", match.image_id)
        groups.setdefault(key, []).append(match)
    return [Photo(tuple(group)) for group in groups.values()]


def photo_of(matches: Iterable[Match]) -> dict[int, Photo]:
    """Each match's picture, keyed by the match's rank."""
    return {m.rank: photo for photo in group_copies(matches) for m in photo.matches}
