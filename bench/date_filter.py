"""What a date filter and the orders by date cost a query, against the same query unfiltered, in one run.

    python bench/date_filter.py                      # 200,000 synthetic images (bench/out/, built once)
    python bench/date_filter.py --images 1000000 --queries 20 --repeat 3
    python bench/date_filter.py --headers FOLDER     # dating an older index: header reads against decodes

The index is `synthetic_index.build`'s (labels as a photo library's, dates spread over 2010-2024: 92 % EXIF,
6 % file time, 2 % none). For each query kind of `query_latency.query_kinds` it draws the same random
queries and runs each one ``--repeat`` times through `query.search.search`, after a warm-up pass: plain
(by score), within a year (``--taken YEAR``), within a month (``--after``/``--before``), by date newest
first (``--sort newest``), and within a year newest first. It prints p50/p95 in ms and each variant's p95
over the plain query's p95, measured in the same run, and the load average beside them.

``--headers FOLDER`` measures instead what dating a photo of an index from before dates costs
(`indexer.images.read_taken`: its header alone) against what indexing reads of it without the model
(`indexer.run_types.read_content`: the whole file read, hashed and decoded for a working size of 448),
photo by photo in turns, over the image files in FOLDER.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from query_latency import percentile, popular_labels, query_kinds, sync_indexes  # noqa: E402
from synthetic_index import build  # noqa: E402

from indexer.store import open_index, tables  # noqa: E402
from query.dates import SORT_NEWEST, SORT_SCORE, DateFilter  # noqa: E402
from query.search import search  # noqa: E402

KINDS = ("1 term", "2-term spatial AND", "2-term AND, any region", "relation", "hierarchy term", "OR / NOT")
#: The years the synthetic photos were taken in (`synthetic_index`: their folder's year).
YEARS = range(2010, 2025)


def variants(rng: random.Random) -> dict[str, tuple[DateFilter, str]]:
    year = rng.choice(YEARS)
    month = rng.randrange(1, 12)
    return {
        "plain": (DateFilter(), SORT_SCORE),
        "--taken YEAR": (DateFilter(taken=str(year)), SORT_SCORE),
        "one month": (DateFilter(after=f"{year}-{month:02d}", before=f"{year}-{month + 1:02d}"), SORT_SCORE),
        "--sort newest": (DateFilter(), SORT_NEWEST),
        "YEAR, newest": (DateFilter(taken=str(year)), SORT_NEWEST),
    }


def headers(folder: Path, repeat: int) -> None:
    from indexer.images import IMAGE_SUFFIXES, read_taken
    from indexer.run_types import read_content

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    header_ms, decode_ms = [], []
    print(f"{len(files)} photos under {folder}, x {repeat}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for _ in range(repeat):
        for path in files:
            start = time.perf_counter()
            read_taken(path, path.stat().st_mtime_ns)
            header_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            read_content(str(path), 448, lambda digest: False)
            decode_ms.append((time.perf_counter() - start) * 1000)
    p50 = {name: percentile(values, 50) for name, values in (("header", header_ms), ("decode", decode_ms))}
    print(f"header read p50 {p50['header']:.2f} ms, read + hash + decode p50 {p50['decode']:.1f} ms: "
          f"{p50['decode'] / p50['header']:.0f} times the header read")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--headers", type=Path, metavar="FOLDER", help="Time header reads against decodes instead.")
    args = parser.parse_args()
    if args.headers is not None:
        headers(args.headers, args.repeat)
        return
    db = HERE / "out" / f"synthetic-dates-{args.images}.db"
    if not db.exists():
        db.parent.mkdir(exist_ok=True)
        print(f"building {db} ({args.images:,} images) ...", flush=True)
        build(db, args.images)
    sync_indexes(db)
    names, weights = popular_labels(db)
    kinds = {kind: queries for kind, queries in query_kinds(names, weights, args.queries, args.seed).items()
             if kind in KINDS}
    rng = random.Random(args.seed)
    engine = open_index(str(db), create=False, readonly=True)
    t = tables(engine)
    plans = {kind: [(text, variants(rng)) for text in queries] for kind, queries in kinds.items()}
    for queries in plans.values():  # warm the page cache
        for text, ways in queries:
            for dates, sort in ways.values():
                search(engine, text, tables=t, within=dates.within() if dates else None, sort=sort)
    print(f"{args.images:,} images, {args.queries} queries per kind x {args.repeat}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'kind':24} {'variant':15} {'p50 ms':>8} {'p95 ms':>8} {'p95 / plain':>12}")
    for kind, queries in plans.items():
        times: dict[str, list[float]] = {}
        for text, ways in queries:
            for _ in range(args.repeat):
                for name, (dates, sort) in ways.items():  # interleaved: every variant sees the same load
                    start = time.perf_counter()
                    search(engine, text, tables=t, within=dates.within() if dates else None, sort=sort)
                    times.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        plain = percentile(times["plain"], 95)
        for name, values in times.items():
            p95 = percentile(values, 95)
            print(f"{kind:24} {name:15} {percentile(values, 50):8.1f} {p95:8.1f} {p95 / plain:12.2f}")
    engine.dispose()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
