"""What browsing matches needs beyond `query.search`: a folder filter, identical photos shown once, label
names completed as they are typed, and where one label scores in one photo.

Pure library code, like the rest of `query`: `imgidx serve` (the `serve` package) is one user of it.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable
from urllib.parse import quote_from_bytes

import sqlalchemy as sa

from indexer.calibration import Calibration, fusion_for, term_fusion
from indexer.labels import COMPOUND_BASE
from indexer.errors import ImgidxError
from indexer.names import URI_PREFIX, stored
from indexer.store import ImageReport, Tables
from query.compile import Within, labelled
from query.copies import group_copies
from query.parser import ARTICLES, FILLERS, KEYWORDS, PREPOSITIONS, RELATIONS
from query.resolve import fold, lexicon
from query.search import Match

#: Names offered at most for one completion.
COMPLETIONS = 8
#: A completion may cover this many words before the caret (``flower p`` -> ``flower pot``).
COMPLETION_WORDS = 3
_WORD = re.compile(r"[^\s()\"]+")


class FolderFilterError(ImgidxError):
    """A folder filter that is not an absolute path."""


# ------------------------------------------------------------------------------------------- folder


def folder_prefixes(folder: str) -> tuple[str, ...]:
    """How the stored paths of the photos under ``folder`` begin: the folder as text, and as the
    ``file://`` URI a name that is not UTF-8 is stored as (`indexer.names`)."""
    folder = os.path.expanduser(folder.strip())
    if not os.path.isabs(folder):
        raise FolderFilterError(f"a folder filter is an absolute path, not {folder!r}")
    under = os.path.normpath(folder).rstrip("/") + "/"
    as_uri = URI_PREFIX + quote_from_bytes(os.fsencode(under), safe="/")
    return (under, as_uri) if stored(under) == under else (as_uri,)


def in_folder(folder: str) -> Within:
    """The restriction to photos under ``folder`` (`query.search.prepare`'s ``within``), compared exactly
    (SQLite's LIKE ignores case); a `FolderFilterError` now for a folder that is not an absolute path."""
    prefixes = folder_prefixes(folder)

    def under(images: sa.FromClause) -> sa.ColumnElement:
        return sa.or_(*(sa.func.substr(images.c.path, 1, len(prefix)) == prefix for prefix in prefixes))

    return under


# ------------------------------------------------------------------------------------------- copies


@dataclass(frozen=True)
class Shown:
    """A match shown for itself and its identical copies (photos of the same content hash)."""

    match: Match
    content_hash: str | None
    copies: int  # photos in the index with this content, itself included


def fold_copies(conn: sa.Connection, t: Tables, matches: Iterable[Match]) -> list[Shown]:
    """``matches`` with each content shown once, by its best-ranked match (`query.copies`), with the number
    of its copies in the whole index, not just on this page.

    Copies share their labels, so they rank next to each other; a caller paging through matches drops a
    content it already showed on an earlier page (its `Shown.content_hash`)."""
    photos = group_copies(matches)
    images = t.images
    wanted = sorted({p.best.content_hash for p in photos if p.best.content_hash is not None})
    counts = {}
    if wanted:
        per_hash = (
            sa.select(images.c.content_hash, sa.func.count())
            .where(images.c.content_hash.in_(wanted), images.c.error.is_(None))
            .group_by(images.c.content_hash)
        )
        counts = dict(conn.execute(per_hash).all())
    return [Shown(p.best, p.best.content_hash, counts.get(p.best.content_hash, 1)) for p in photos]


def copies_of(conn: sa.Connection, t: Tables, content_hash: str) -> list[tuple[int, str]]:
    """``(image_id, stored path)`` of every labelled photo with this content, in path order."""
    images = t.images
    return [
        tuple(row)
        for row in conn.execute(
            sa.select(images.c.image_id, images.c.path)
            .where(images.c.content_hash == content_hash, labelled(images))
            .order_by(images.c.path)
        )
    ]


def recent_leaders(conn: sa.Connection, t: Tables, photos: int = 200, n: int = 3) -> list[str]:
    """The labels that lead the most of the last ``photos`` photos indexed, most first: a glimpse of what
    an index holds that costs milliseconds on any size of index (`indexer.store.index_stats` counts all)."""
    images, il = t.images, t.image_labels
    recent = sa.select(images.c.image_id).where(labelled(images)).order_by(images.c.image_id.desc()).limit(photos)
    rank = sa.func.row_number().over(partition_by=il.c.image_id, order_by=(il.c.score.desc(), il.c.class_id))
    ranked = (sa.select(il.c.class_id, rank.label("rank"))
              .where(il.c.image_id.in_(recent.scalar_subquery()), il.c.class_id < COMPOUND_BASE).subquery())
    leads = sa.func.count().label("leads")
    rows = conn.execute(
        sa.select(t.classes.c.name, leads)
        .join_from(ranked, t.classes, t.classes.c.class_id == ranked.c.class_id)
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.class_id, t.classes.c.name)
        .order_by(leads.desc(), ranked.c.class_id)
        .limit(n)
    )
    return [name for name, _ in rows]


def top_labels(conn: sa.Connection, t: Tables, image_ids: Iterable[int], n: int = 3) -> dict[int, list[str]]:
    """The names of each photo's ``n`` best labels (by stored score), for text that says what a photo shows
    (a web page's alt text): one statement for a page of photos, by the labels' primary key."""
    ids = sorted(set(image_ids))
    if not ids:
        return {}
    il = t.image_labels
    rows = conn.execute(
        sa.select(il.c.image_id, t.classes.c.name)
        .join_from(il, t.classes, t.classes.c.class_id == il.c.class_id)
        .where(il.c.image_id.in_(ids), il.c.class_id < COMPOUND_BASE)
        .order_by(il.c.image_id, il.c.score.desc(), il.c.class_id)
    )
    found: dict[int, list[str]] = {}
    for image_id, name in rows:
        names = found.setdefault(image_id, [])
        if len(names) < n:
            names.append(name)
    return found


# ------------------------------------------------------------------------------------------- completion


@dataclass(frozen=True)
class Completion:
    """Names that complete the words of a query box that begin at ``start``."""

    start: int
    names: list[str]


def complete(text: str, n: int = COMPLETIONS) -> Completion:
    """Label names (classes, vocabulary words, WordNet groups) that begin with the last words of ``text``,
    compared as labels are (case, spaces and hyphens ignored: ``flower p`` gives ``flowerpot``), shortest
    first. The longest run of words (up to `COMPLETION_WORDS`, none of them a keyword, preposition or
    relation word before the last) that some name begins with wins. A name holding AND, OR or NOT comes
    quoted, as the query needs it."""
    words = list(_WORD.finditer(text))
    if not words or words[-1].end() != len(text):
        return Completion(len(text), [])
    for count in range(min(COMPLETION_WORDS, len(words)), 0, -1):
        run = words[-count:]
        if any(w.group().lower() in _NOT_IN_A_NAME for w in run[:-1]):
            continue
        found = _starting_with(fold(" ".join(w.group() for w in run)))
        if found:
            keyworded = set(lexicon().keyword_names)
            ranked = sorted(found, key=lambda name: (len(name), name))[:n]
            return Completion(run[0].start(), [f"'{name}'" if name in keyworded else name for name in ranked])
    return Completion(len(text), [])


#: Words that end a label in a query, so a completion never spans them.
_NOT_IN_A_NAME = frozenset(KEYWORDS + PREPOSITIONS + ARTICLES + FILLERS + tuple(w for r in RELATIONS for w in r.split()))


@lru_cache(maxsize=1)
def _folded_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every name the classes can see, folded (`query.resolve.fold`) and sorted, and the names in that order."""
    pairs = sorted((fold(name), name) for name in lexicon().names)
    return tuple(k for k, _ in pairs), tuple(name for _, name in pairs)


def _starting_with(prefix: str) -> list[str]:
    """The names whose folded form begins with the folded ``prefix``."""
    if not prefix:
        return []
    keys, names = _folded_names()
    start = bisect.bisect_left(keys, prefix)
    end = bisect.bisect_left(keys, prefix + "\x7f", lo=start)
    return list(dict.fromkeys(names[start:end]))


# ------------------------------------------------------------------------------------------- scores


def cell_confidences(report: ImageReport, classes: Iterable[int], calibration: Calibration,
                     fusion: str | None = None, grouped: bool = False) -> list[float | None]:
    """Per cell, the confidence of a label over ``classes`` from the scores stored for the photo, the number
    a query reads there (`Calibration.label_confidence`, by the index's rule unless ``fusion``, or the WordNet
    groups' for a ``grouped`` label: `indexer.calibration.term_fusion`); None where none of the classes is
    stored for the cell."""
    wanted = frozenset(classes)
    fusion = term_fusion(fusion or fusion_for(report.objects is not None), grouped)
    return [calibration.label_confidence({label.class_id: label.evidence for label in cell}, wanted, fusion)
            for cell in report.cells]
