"""Query latency on a synthetic 1,000,000-image index, and `imgidx query` wall time on 100,000 images.

    python bench/query_latency.py                 # builds the indexes once (bench/out/, ~3 min), then measures
    python bench/query_latency.py --images 200000 --queries 20

For each query kind it draws random queries (labels weighted by how often they occur in the index, so
queries ask for things that exist; regions uniform over cells, rows, columns and anywhere), runs each
``--repeat`` times through `query.search.search` on one open engine (parse + resolve + compile + execute +
fetch) after a warm-up pass, and prints p50/p95 in milliseconds. A cached index whose secondary indexes
differ from `schema.sql`'s (built by an older version) has them rebuilt first, so the figures are always
for the schema as it is.

The CLI figure is the wall time of a fresh ``imgidx query ... --db`` process (Python start-up, imports,
opening the index, the query, printing the table), several runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from synthetic_index import build  # noqa: E402

from indexer import labels  # noqa: E402
from indexer.store import open_index, schema_statements, tables  # noqa: E402
from indexer.calibration import uncalibrated  # noqa: E402
from query.search import search as search_index  # noqa: E402

REGIONS = (
    "top-left", "top-center", "top-right", "center-left", "center", "center-right", "bottom-left",
    "bottom-center", "bottom-right", "top row", "bottom row", "left column", "right column", "middle row",
    "anywhere",
)
CELLS = REGIONS[:9]
HIERARCHY = ("dog", "cat", "bird", "vehicle", "car", "bus", "fish", "snake", "monkey", "truck", "boat", "fruit")
RELATIONS = ("left of", "right of", "above", "below", "next to")


def cached_index(n_images: int) -> Path:
    path = HERE / "out" / f"synthetic-{n_images}.db"
    if not path.exists():
        print(f"building {path} ({n_images:,} images) ...", flush=True)
        build(path, n_images)
    sync_indexes(path)
    return path


def sync_indexes(path: Path) -> None:
    """Make the cached index's secondary indexes exactly those of `schema.sql`."""
    wanted = {s.split()[5]: s for s in schema_statements() if s.upper().startswith("CREATE INDEX")}
    conn = sqlite3.connect(path)
    present = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    for stale in present - set(wanted):
        print(f"dropping index {stale} (not in schema.sql)", flush=True)
        conn.execute(f"DROP INDEX {stale}")
    for name in set(wanted) - present:
        print(f"creating index {name} from schema.sql ...", flush=True)
        conn.execute(wanted[name])
    conn.commit()
    conn.close()


def popular_labels(db: Path, k: int = 400) -> tuple[list[str], list[int]]:
    """The ``k`` most frequent classes with their row counts (the query label distribution)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT class_id, COUNT(*) FROM image_labels GROUP BY class_id ORDER BY COUNT(*) DESC LIMIT ?", (k,)
    ).fetchall()
    conn.close()
    names = [labels.classes()[cls].name for cls, _ in rows]
    return [f'"{name}"' if " and " in f" {name.lower()} " else name for name in names], [count for _, count in rows]


def query_kinds(names: list[str], weights: list[int], n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)

    def label() -> str:
        return rng.choices(names, weights=weights)[0]

    def term(regions=REGIONS) -> str:
        region = rng.choice(regions)
        return label() if region == "anywhere" else f"{label()} in {region}"

    return {
        "1 term": [term() for _ in range(n)],
        "2-term spatial AND": [f"{term(CELLS)} AND {term(CELLS)}" for _ in range(n)],
        "2-term AND, any region": [f"{term()} AND {term()}" for _ in range(n)],
        "3-term AND": [f"{term()} AND {term()} AND {term()}" for _ in range(n)],
        "relation": [f"{label()} {rng.choice(RELATIONS)} {label()}" for _ in range(n)],
        "hierarchy term": [f"{rng.choice(HIERARCHY)} in {rng.choice(REGIONS[:-1])}" for _ in range(n)],
        "hierarchy AND term": [f"{rng.choice(HIERARCHY)} in {rng.choice(CELLS)} AND {term(CELLS)}" for _ in range(n)],
        "OR / NOT": [
            rng.choice((f"{term()} OR {term()}", f"{term()} AND NOT {rng.choice(HIERARCHY)}")) for _ in range(n)
        ],
        # No positive term: every image is a candidate. Few of them, they are slow by nature.
        "NOT alone": [f"NOT {h}" for h in rng.sample(HIERARCHY, 3)],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(db: Path, kinds: dict[str, list[str]], repeat: int, raw: bool) -> dict[str, tuple[float, float, float, int]]:
    """``raw``: read the scores as they are, not through the index's calibration."""
    engine = open_index(str(db), create=False)
    t = tables(engine)
    if raw:
        search = functools.partial(search_index, calibration=uncalibrated("synthetic"))
    else:
        search = search_index
    for queries in kinds.values():  # warm the page cache and SQLAlchemy's statement cache
        for text in queries:
            search(engine, text, tables=t)
    results = {}
    for kind, queries in kinds.items():
        times = []
        matches = []
        for text in queries:
            for _ in range(repeat):
                start = time.perf_counter()
                result = search(engine, text, tables=t)
                times.append((time.perf_counter() - start) * 1000)
            matches.append(result.total)
        results[kind] = (percentile(times, 50), percentile(times, 95), max(times), int(statistics.median(matches)))
    engine.dispose()
    return results


def cli_wall_time(db: Path, text: str, runs: int) -> list[float]:
    exe = shutil.which("imgidx") or str(Path(sys.executable).with_name("imgidx"))
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([exe, "query", text, "--db", str(db)], check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return times[1:]  # the first run warms the page cache


def print_table(title: str, results: dict[str, tuple[float, float, float, int]]) -> None:
    print(f"\n{title}")
    print(f"  {'query kind':<24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'median matches':>15}")
    for kind, (p50, p95, worst, matches) in results.items():
        print(f"  {kind:<24} {p50:8.1f} {p95:8.1f} {worst:8.1f} {matches:15,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000, help="images in the latency index")
    parser.add_argument("--cli-images", type=int, default=100_000, help="images in the CLI wall-time index")
    parser.add_argument("--queries", type=int, default=40, help="random queries per kind")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each query")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--raw", action="store_true",
        help="read the synthetic scores as they are instead of through Lite0's calibration (the rows imitate "
             "probabilities, so the calibration reads their tails of rare classes as news and matches more)",
    )
    args = parser.parse_args()

    db = cached_index(args.images)
    cli_db = cached_index(args.cli_images)
    names, weights = popular_labels(db)
    kinds = query_kinds(names, weights, args.queries, args.seed)
    print(f"index: {db.name}, {db.stat().st_size / 1e9:.2f} GB; {args.queries} queries per kind x {args.repeat} runs")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; SQLite {sqlite3.sqlite_version}")
    print("examples: " + "; ".join(f"{k}: {v[0]}" for k, v in kinds.items()))

    print_table("schema.sql" + (", scores read raw" if args.raw else ", Lite0's calibration"), measure(db, kinds, args.repeat, args.raw))

    text = "school bus in center AND flowerpot top-left"
    times = cli_wall_time(cli_db, text, args.cli_runs)
    print(f"\nimgidx query {text!r} --db {cli_db.name} ({args.cli_images:,} images):")
    print(f"  wall time over {len(times)} runs: min {min(times):.0f} ms, median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
    count = sa.create_engine(f"sqlite:///{cli_db}")
    with count.connect() as c:
        rows = c.execute(sa.text("SELECT COUNT(*) FROM cell_labels")).scalar_one()
    count.dispose()
    print(f"  ({rows:,} cell_labels rows)")


if __name__ == "__main__":
    main()
