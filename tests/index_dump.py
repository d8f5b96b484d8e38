"""An index's content keyed by path, for comparing two indexes row by row whatever their image ids."""

from __future__ import annotations

import sqlalchemy as sa

from indexer import store

#: Every ``images`` column but the id (assigned by each database) and the time of indexing.
IMAGE_COLUMNS = ("path", "size_bytes", "mtime_ns", "content_hash", "width", "height", "model", "working_size",
                 "error")


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
