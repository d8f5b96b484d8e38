"""Scaling: `--engine ray` with 1 and 2 workers against the single-process engine, and the write path's ceiling.

In one run, over one folder of camera-like JPEGs (bench/photo_folder.py):

- **local**: `indexer.pipeline.index` in this process (decode threads + the model), into a new SQLite index;
- **ray N**: the same call with ``runner="ray"`` and N model actors on a local Ray instance that the run
  starts and stops, into a new SQLite index;
- **write path**: how many images per second one writer commits, the driver's job in both engines:
  ``store.save_images`` of the labels the local run stored (the same rows per image), in transactions of one
  batch, into SQLite and (with ``--pg URL``) PostgreSQL. This is the ceiling a cluster hits when its nodes
  together produce results faster than one driver writes them.

Throughput is reported two ways: end to end (from the call to the last commit, including Ray's start and
the model loads), and steady (images committed per second over the second half of the run, the same
measure for every engine: what a long run approaches; see `STEADY_WINDOWS`).

    python bench/scale.py [--model efficientnet-lite0 | --model vgg16-random] [--count 48]
                          [--photo-size 1600x1200] [--workers 1 2] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import sqlalchemy as sa  # noqa: E402

from index_throughput import model_loader  # noqa: E402
from photo_folder import make_folder  # noqa: E402

from indexer import runtime as runtimes  # noqa: E402
from indexer import pipeline, regions, store  # noqa: E402
from indexer.store import FileRow  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402

#: Parts of a run (fractions of its images) whose commit rates are "steady": the second half, and its two
#: quarters apart. Ray reads ahead while its actors load the model, so the first results come faster than
#: a long run's; where the quarters agree, that head start is used up.
STEADY_WINDOWS = ((0.5, 1.0), (0.5, 0.75), (0.75, 1.0))


def run_engine(folder: Path, load, settings_model: str, runner: str, workers: int | None, batch: int):
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "scale.db"
        engine = store.open_index(str(db))
        commits: list[tuple[float, int]] = []

        def on_event(event) -> None:
            if isinstance(event, pipeline.Progress):
                commits.append((time.perf_counter(), event.done))

        start = time.perf_counter()
        summary = pipeline.index(
            engine, [folder], lambda settings: load(), model=settings_model, batch=batch, workers=workers,
            runner=runner, on_event=on_event,
        )
        wall = time.perf_counter() - start
        with engine.connect() as conn:
            labels = stored_labels(conn)
        engine.dispose()
    return summary, wall, [rate_between(commits, a, b) for a, b in STEADY_WINDOWS], commits[0][0] - start, labels


def rate_between(commits: list[tuple[float, int]], low: float, high: float) -> float:
    """Images committed per second from the commit that reached fraction ``low`` of the run to ``high``."""
    total = commits[-1][1]
    (t0, n0) = next(c for c in commits if c[1] >= low * total)
    (t1, n1) = next(c for c in commits if c[1] >= high * total)
    return (n1 - n0) / (t1 - t0)


def stored_labels(conn: sa.Connection) -> list[regions.Regions]:
    """Every image's stored labels, as `Regions`, to write again in the write-path measurement."""
    t = store.tables(conn)
    by_image: dict[int, tuple[list, list]] = {}
    for image_id, *label in conn.execute(sa.select(t.image_labels.c.image_id, t.image_labels.c.class_id,
                                                   t.image_labels.c.score, t.image_labels.c.share)):
        by_image.setdefault(image_id, ([], []))[0].append(regions.ImageLabel(*label))
    for image_id, *label in conn.execute(sa.select(t.cell_labels.c.image_id, t.cell_labels.c.cell,
                                                   t.cell_labels.c.class_id, t.cell_labels.c.score,
                                                   t.cell_labels.c.coverage)):
        by_image.setdefault(image_id, ([], []))[1].append(regions.CellLabel(*label))
    return [regions.Regions(image_labels, cell_labels) for image_labels, cell_labels in by_image.values()]


def write_rate(url: str, labels: list[regions.Regions], images_to_write: int, batch: int) -> float:
    """Images per second that one writer commits into ``url`` (a new index), ``batch`` images a transaction."""
    engine = store.open_index(url)
    t = store.tables(engine)
    start = time.perf_counter()
    for first in range(0, images_to_write, batch):
        items = [
            (FileRow(f"/bench/{i:08d}.jpg", 1, 1, f"{i:064x}", 640, 480, "bench", 448), labels[i % len(labels)])
            for i in range(first, min(first + batch, images_to_write))
        ]
        with engine.begin() as conn:
            store.save_images(conn, t, items)
    rate = images_to_write / (time.perf_counter() - start)
    engine.dispose()
    return rate


def fresh_pg_database(server_url: str) -> str:
    """A new empty database on the server, for the write-path measurement."""
    name = f"imgidx_scale_{os.getpid()}_{int(time.time())}"
    engine = store.create_engine(server_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return str(sa.engine.make_url(store.as_url(server_url)).set(database=name).render_as_string(hide_password=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--photo-size", default="1600x1200", help="WxH of the generated photos")
    parser.add_argument("--batch", type=int, default=runtimes.FALLBACK_BATCH,
                        help="images per model call and per write transaction (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray model actors to try")
    parser.add_argument("--writes", type=int, default=4000, help="images written in the write-path measurement")
    parser.add_argument("--pg", default=None, help="a PostgreSQL server URL for the write-path measurement")
    args = parser.parse_args()

    width, height = (int(v) for v in args.photo_size.split("x"))
    folder = make_folder(args.count, (height, width))
    load = model_loader(args.model, args.weights, "auto")
    name = "vgg16" if args.model == "vgg16-random" else args.model
    print(f"{args.count} JPEGs of {args.photo_size}, {os.cpu_count()} CPUs, {name}, working size "
          f"{DEFAULT_WORKING_SIZE}, batch {args.batch}")

    runs = [("local", None)] + [("ray", n) for n in args.workers]
    results = {}
    labels: list[regions.Regions] = []
    for runner, workers in runs:
        summary, wall, windows, first_commit, stored = run_engine(folder, load, name, runner, workers, args.batch)
        steady = windows[0]
        assert summary.indexed == args.count and summary.failed == 0, summary
        labels = labels or stored
        results[(runner, workers)] = (args.count / wall, steady)
        label = "local" if runner == "local" else f"ray, {workers} worker{'s' if workers > 1 else ''}"
        base_wall, base_steady = results[("local", None)]
        print(f"{label:16s} end to end {args.count / wall:7.2f} images/s ({wall:6.1f} s, "
              f"{args.count / wall / base_wall:5.2f}x local); steady {steady:7.2f} images/s "
              f"({steady / base_steady:5.2f}x local; quarters {windows[1]:.2f}, {windows[2]:.2f}; first commit after "
              f"{first_commit:.1f} s); "
              f"driver writes {summary.write_seconds / summary.indexed * 1000:.1f} ms per image", flush=True)

    rows = sum(len(r.image_labels) + len(r.cell_labels) for r in labels) / len(labels)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate = write_rate(str(Path(tmp) / "write.db"), labels, args.writes, args.batch)
    print(f"write path, SQLite:     {sqlite_rate:8.0f} images/s ({rows:.0f} label rows per image, "
          f"{args.batch} images per transaction)")
    if args.pg:
        pg_rate = write_rate(fresh_pg_database(args.pg), labels, args.writes, args.batch)
        print(f"write path, PostgreSQL: {pg_rate:8.0f} images/s")


if __name__ == "__main__":
    main()
