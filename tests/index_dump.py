"""An index's content keyed by path, for comparing two indexes row by row whatever their image ids."""

from __future__ import annotations

import math

import sqlalchemy as sa

from indexer import store

#: Every ``images`` column but the id (assigned by each database) and the time of indexing.
IMAGE_COLUMNS = ("path", "size_bytes", "mtime_ns", "content_hash", "width", "height", "model", "working_size",
                 "error")
#: How far two runs' scores and box corners may differ. The same photos through the same int8 network differ in
#: their last digits where the CPU's kernels add in another order for another thread count or batch (seen on an
#: AMD EPYC with AVX-VNNI, Ray's one-thread actors against the local engine: 3e-7 at most; bit for bit on Intel).
REL_TOL, ABS_TOL = 1e-5, 1e-6


def dump_index(url: str) -> dict[str, tuple]:
    """``path -> (images row, sorted image_labels rows, sorted cell_labels rows, sorted boxes rows)``, plus
    the settings."""
    engine = store.open_index(url, create=False)
    try:
        with engine.connect() as conn:
            t = store.tables(conn)
            images = t.images
            ids = {}
            content: dict[str, tuple] = {}
            for row in conn.execute(sa.select(images.c.image_id, *(images.c[c] for c in IMAGE_COLUMNS))):
                ids[row[0]] = row[1]
                content[row[1]] = (tuple(row[1:]), [], [], [])
            il, cl = t.image_labels, t.cell_labels
            for image_id, *label in conn.execute(sa.select(il.c.image_id, il.c.class_id, il.c.score, il.c.share)):
                content[ids[image_id]][1].append(tuple(label))
            for image_id, *label in conn.execute(
                sa.select(cl.c.image_id, cl.c.cell, cl.c.class_id, cl.c.score, cl.c.coverage)
            ):
                content[ids[image_id]][2].append(tuple(label))
            bx = t.boxes
            for image_id, *box in conn.execute(sa.select(bx.c.image_id, *(bx.c[c] for c in store.BOX_COLUMNS))):
                content[ids[image_id]][3].append(tuple(box))
            settings = store.read_settings(conn)
    finally:
        engine.dispose()
    dumped = {path: (row, sorted(image_labels), sorted(cell_labels), sorted(found))
              for path, (row, image_labels, cell_labels, found) in content.items()}
    dumped["<settings>"] = settings
    return dumped


def differences(left: dict[str, tuple], right: dict[str, tuple]) -> list[str]:
    """The paths (and settings) whose dumps differ beyond `REL_TOL`/`ABS_TOL`, each with the first difference;
    empty when the two indexes hold the same rows."""
    found = [f"{key}: only in the {side}" for key, side in
             [(k, "left") for k in left.keys() - right.keys()] + [(k, "right") for k in right.keys() - left.keys()]]
    for key in sorted(left.keys() & right.keys()):
        first = _first_difference(left[key], right[key])
        if first is not None:
            found.append(f"{key}: {first}")
    return found


def _first_difference(a, b) -> str | None:
    if isinstance(a, float) and isinstance(b, float):
        return None if math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) else f"{a!r} != {b!r}"
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and type(a) is type(b):
        if len(a) != len(b):
            return f"{len(a)} rows != {len(b)} rows"
        for x, y in zip(a, b):
            first = _first_difference(x, y)
            if first is not None:
                return first
        return None
    return None if a == b else f"{a!r} != {b!r}"


def same_answers(left: dict[str, list[tuple[str, float]]], right: dict[str, list[tuple[str, float]]]) -> bool:
    """Two indexes' answers (query -> [(path, score)]) hold the same paths at scores within the tolerance
    of `differences`; paths whose scores tie within it may list in either order."""
    def by_path(answers):
        return {query: sorted(matches) for query, matches in answers.items()}

    return left.keys() == right.keys() and not differences(by_path(left), by_path(right))
