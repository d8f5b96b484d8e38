"""What one secondary index of the label tables costs the writer: the label rows of the first ``--photos``
photos of the 100,000-photo synthetic index (`bench/query_latency.py` builds it into bench/out/) inserted into
a new index in transactions of 8 photos, as `indexer.writer` commits them, with and without the index named,
alternately, ``--runs`` times each; medians and their ratio.

``--drop class_runs`` measures the class runs (`indexer.store.runs`) instead: the photos are stored through
`indexer.store.save_images`, as the writer stores them, with the runs kept and with them not kept.

    python bench/write_cost.py                                   # cell_labels_image_class, 5,000 photos
    python bench/write_cost.py --drop class_runs
    python bench/write_cost.py --drop cell_labels_class_cell_image --photos 2000
    python bench/write_cost.py --drop image_labels_class_by_image --source bench/out/synthetic-1000000.db
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from indexer import store  # noqa: E402
from indexer.labels import COMPOUND_BASE  # noqa: E402
from indexer.regions import CellLabel, ImageLabel, Regions  # noqa: E402
from indexer.store import FileRow, open_index  # noqa: E402

BATCH = 8


def read_rows(source: Path, photos: int) -> tuple[list, dict[int, tuple[list, list]]]:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    images = src.execute("SELECT * FROM images WHERE image_id <= ? ORDER BY image_id", (photos,)).fetchall()
    rows: dict[int, tuple[list, list]] = {image[0]: ([], []) for image in images}
    for row in src.execute("SELECT * FROM cell_labels WHERE image_id <= ?", (photos,)):
        rows[row[0]][0].append(row)
    for row in src.execute("SELECT * FROM image_labels WHERE image_id <= ?", (photos,)):
        rows[row[0]][1].append(row)
    src.close()
    return images, rows


def write(path: Path, images: list, rows: dict, drop: str | None) -> float:
    open_index(str(path)).dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    if drop:
        conn.execute(f"DROP INDEX {drop}")
    start = time.perf_counter()
    for i in range(0, len(images), BATCH):
        batch = images[i:i + BATCH]
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO images VALUES ({', '.join('?' * len(batch[0]))})", batch)
        for image in batch:
            cells, whole = rows[image[0]]
            conn.executemany("INSERT INTO cell_labels VALUES (?, ?, ?, ?, ?)", cells)
            conn.executemany("INSERT INTO image_labels VALUES (?, ?, ?, ?)", whole)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def write_through_store(path: Path, images: list, rows: dict, drop: str | None, compounds: list[dict]) -> float:
    """`write` through `store.save_images`, the class runs kept unless ``drop``; ``compounds``: the source's
    classes of compounds, which its rows name."""
    engine = open_index(str(path))
    t = store.tables(engine)
    with engine.begin() as conn:
        store.add_classes(conn, t, compounds)
    kept = store.runs.kept
    store.runs.kept = (lambda conn: False) if drop else kept
    items = []
    for image in images:
        _, path_, size, mtime, content_hash, width, height, model, working_size, _, error, *_ = image
        cells, whole = rows[image[0]]
        regions = None if error else Regions([ImageLabel(*row[1:]) for row in whole],
                                             [CellLabel(*row[1:]) for row in cells])
        items.append((FileRow(path_, size, mtime, content_hash, width, height, model, working_size, error), regions))
    try:
        start = time.perf_counter()
        for i in range(0, len(items), BATCH):
            with engine.begin() as conn:
                store.save_images(conn, t, items[i:i + BATCH])
        return time.perf_counter() - start
    finally:
        store.runs.kept = kept
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=HERE / "out" / "synthetic-100000.db")
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--drop", default="cell_labels_image_class", help="the index whose cost is measured")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    images, rows = read_rows(args.source, args.photos)
    with sqlite3.connect(f"file:{args.source}?mode=ro", uri=True) as src:
        compounds = [dict(zip(("class_id", "wnid", "name", "names"), row)) for row in src.execute(
            "SELECT class_id, wnid, name, names FROM classes WHERE class_id >= ?", (COMPOUND_BASE,))]
    print(f"{len(images):,} photos, {sum(len(c) for c, _ in rows.values()):,} cell_labels rows, "
          f"{sum(len(w) for _, w in rows.values()):,} image_labels rows, transactions of {BATCH} photos")
    times: dict[str, list[float]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            for way, drop in (("with", None), ("without", args.drop)):
                target = Path(folder) / f"{way}-{run}.db"
                times[way].append(write_through_store(target, images, rows, drop, compounds)
                                  if args.drop == "class_runs" else write(target, images, rows, drop))
    for way, values in times.items():
        median = statistics.median(values)
        print(f"{way} {args.drop}: {median:.2f} s, {median / len(images) * 1000:.2f} ms per photo "
              f"(runs {', '.join(f'{v:.2f}' for v in values)})")
    print(f"ratio with / without: {statistics.median(times['with']) / statistics.median(times['without']):.3f}")


if __name__ == "__main__":
    main()
