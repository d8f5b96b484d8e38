"""Every label an index holds, with how many photos show it and the photo that shows it best, grouped as
a person browses them: the face detector's face, the object detector's COCO classes, and ImageNet's
classes under their closest WordNet ancestor that gathers several of them (`class_ancestors`).

A class's count is the number of photos whose stored image-level score for that class alone reaches the
default confidence (`query.DEFAULT_MIN_SCORE`, through the index's calibration): the photos a search for
the class finds. Each count is one range of the covering index ``image_labels (class_id, score)`` and the
best photo one step into it: no table scan, and each class its own threshold (a plain ``GROUP BY class_id``
could not apply one). On the 1,000,000-image synthetic index that is about 4 s, made once per state of the
index (bench/RESULTS.md). A search for a class's name may cover related classes too (``cat``: the
detector's and ImageNet's cats), so it can find more than the class's count.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from indexer import labels
from indexer.calibration import Calibration
from indexer.labels import COMPOUND_BASE, FACE_CLASS
from indexer.store import Tables
from query import DEFAULT_MIN_SCORE
from query.compile import labelled

#: A WordNet ancestor makes a group of the catalog when it gathers at least this many classes present.
MIN_GROUP = 2
#: The kinds of label, in the order the catalog lists them.
FACES, OBJECTS, IMAGENET = "faces", "objects", "ImageNet"


@dataclass(frozen=True)
class Entry:
    """One class present in the index: its photos at the default confidence, and its best photo."""

    class_id: int
    name: str
    photos: int
    best_image: int
    best_hash: str | None


@dataclass
class Group:
    """Classes under one heading: a kind (faces, objects) or an ImageNet ancestor, with the broader
    ancestors above it, broadest first (``animal``, ``mammal``, ``carnivore`` above ``cat``)."""

    kind: str
    name: str
    wnid: str | None = None
    broader: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    @property
    def photos(self) -> int:
        """The largest of its classes' counts: a lower bound of the group's photos, cheap to know."""
        return max((e.photos for e in self.entries), default=0)


@dataclass
class Catalog:
    groups: list[Group]

    @property
    def entries(self) -> list[Entry]:
        return [e for g in self.groups for e in g.entries]

    def counts_by_name(self) -> dict[str, int]:
        """Photos per class name, lower case."""
        return {e.name.lower(): e.photos for e in self.entries}

    def counts_by_class(self) -> dict[int, int]:
        """Photos per class id (for ranking completions)."""
        return {e.class_id: e.photos for e in self.entries}


def class_counts(conn: sa.Connection, t: Tables, calibration: Calibration,
                 min_score: float = DEFAULT_MIN_SCORE) -> list[Entry]:
    """Every class with a photo reaching ``min_score``, most photos first (then name)."""
    il, images = t.image_labels, t.images
    names = dict(conn.execute(sa.select(t.classes.c.class_id, t.classes.c.name).where(t.classes.c.class_id < COMPOUND_BASE)).all())
    threshold = sa.bindparam("threshold", type_=sa.Float)
    cls = sa.bindparam("cls", type_=sa.Integer)
    count = sa.select(sa.func.count()).select_from(il).where(il.c.class_id == cls, il.c.score >= threshold)
    best = (
        sa.select(il.c.image_id, images.c.content_hash)
        .join(images, images.c.image_id == il.c.image_id)
        .where(il.c.class_id == cls, il.c.score >= threshold, labelled(images))
        .order_by(il.c.score.desc(), il.c.image_id)
        .limit(1)
    )
    found = []
    for class_id in sorted(names):
        evidence = calibration.evidence_for(min_score, (class_id,))
        if evidence == float("inf"):
            continue
        photos = conn.execute(count, {"cls": class_id, "threshold": evidence}).scalar_one()
        if not photos:
            continue
        top = conn.execute(best, {"cls": class_id, "threshold": evidence}).first()
        if top is None:  # only stale rows (a photo waiting for --reindex)
            continue
        found.append(Entry(class_id, names[class_id], photos, top[0], top[1]))
    return sorted(found, key=lambda e: (-e.photos, e.name.lower()))


def catalog(conn: sa.Connection, t: Tables, calibration: Calibration, min_score: float = DEFAULT_MIN_SCORE) -> Catalog:
    """The classes of `class_counts`, grouped (module docstring): faces, objects, then ImageNet's groups,
    the group with the most photos first, classes of no group last."""
    entries = class_counts(conn, t, calibration, min_score)
    faces = Group(FACES, "faces", entries=[e for e in entries if e.class_id == FACE_CLASS])
    objects = Group(OBJECTS, "objects (COCO)", entries=[e for e in entries if labels.is_object_class(e.class_id)])
    imagenet = [e for e in entries if e.class_id < labels.NUM_CLASSES]
    groups = [g for g in (faces, objects) if g.entries]
    groups += _imagenet_groups(conn, t, imagenet)
    return Catalog(groups)


def _imagenet_groups(conn: sa.Connection, t: Tables, entries: list[Entry]) -> list[Group]:
    """Each class under its most specific ancestor (the one over the fewest of the 1000 classes) that
    gathers `MIN_GROUP` classes present; the ancestors above it as its ``broader`` chain."""
    if not entries:
        return []
    ca = t.class_ancestors
    size_of = dict(conn.execute(sa.select(ca.c.ancestor_wnid, sa.func.count()).group_by(ca.c.ancestor_wnid)).all())
    present = {e.class_id for e in entries}
    ancestors: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for class_id, wnid, name in conn.execute(
        sa.select(ca.c.class_id, ca.c.ancestor_wnid, ca.c.ancestor_name).where(ca.c.class_id.in_(sorted(present)))
    ):
        ancestors[class_id].append((wnid, name))
    gathered: dict[str, int] = defaultdict(int)
    for class_id in present:
        for wnid, _ in ancestors[class_id]:
            gathered[wnid] += 1
    groups: dict[str, Group] = {}
    loose = Group(IMAGENET, "other ImageNet classes")
    for entry in entries:
        candidates = [(size_of[w], w, n) for w, n in ancestors[entry.class_id] if gathered[w] >= MIN_GROUP and w in size_of]
        if not candidates:
            loose.entries.append(entry)
            continue
        size, wnid, name = min(candidates)
        if wnid not in groups:
            above = sorted((s, n) for s, w, n in candidates if s > size)
            groups[wnid] = Group(IMAGENET, name, wnid, broader=[n for _, n in reversed(above)])
        groups[wnid].entries.append(entry)
    ordered = sorted(groups.values(), key=lambda g: (-g.photos, g.name.lower()))
    return ordered + ([loose] if loose.entries else [])
