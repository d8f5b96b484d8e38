"""What a long-running process pays the garbage collector for queries: `bench/query_latency.py`'s queries (every
kind, 40 each, seed 7) on its 1M synthetic index, through `query.search.search` on one engine, as `imgidx
serve` runs them.

    python bench/query_garbage.py                              # this checkout
    python bench/query_garbage.py --baseline-src /tmp/main-src  # and another checkout's code, in turn

Printed per code: the objects the collector tracks after one pass over the queries (SQLAlchemy's statement
cache holds most), the cyclic garbage a query leaves (collected with the collector off, per query), and over
``--repeat`` further passes: how many full collections ran and how long they took (a full pass stops every
thread of the process), and the young collections' total. The counts do not depend on the machine's load;
the milliseconds do.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent


def measure(repeat: int, images: int) -> dict:
    sys.path.insert(0, str(HERE))
    import query_latency as ql

    from indexer.store import open_index, tables
    from query.search import search

    db = ql.cached_index(images)
    names, weights = ql.popular_labels(db)
    queries = [q for kind in ql.query_kinds(names, weights, 40, 7).values() for q in kind]
    engine = open_index(str(db), create=False, readonly=True)
    t = tables(engine)
    for text in queries:
        search(engine, text, tables=t)
    gc.collect()
    held = len(gc.get_objects())

    gc.disable()
    gc.collect()
    for text in queries:
        search(engine, text, tables=t)
    garbage = gc.collect()
    gc.enable()

    started: dict[str, float] = {}
    full, young = [], []

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            (full if info["generation"] == 2 else young).append((time.perf_counter() - started["t"]) * 1000)

    gc.callbacks.append(timed)
    for _ in range(repeat):
        for text in queries:
            search(engine, text, tables=t)
    gc.callbacks.remove(timed)
    engine.dispose()
    return {"queries": len(queries), "held": held, "garbage_per_query": garbage / len(queries),
            "full": full, "young_ms": sum(young), "young": len(young), "runs": repeat * len(queries)}


def measured_in(source: Path, repeat: int, images: int) -> dict:
    """`measure` in a fresh process that imports the ``indexer`` and ``query`` in ``source``."""
    argv = [sys.executable, __file__, "--measure", str(repeat), "--images", str(images)]
    done = subprocess.run(argv, check=True, text=True, capture_output=True, cwd=source,
                          env={**os.environ, "PYTHONPATH": str(source)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, help="also the indexer/ and query/ in this folder")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the queries")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.images)))
        return
    print(f"load averages {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    sources = {"this": SOURCE, **({"baseline": args.baseline_src} if args.baseline_src else {})}
    print(f"{'code':<9} {'queries':>7} {'objects held':>12} {'garbage/query':>13} {'full passes':>11} "
          f"{'full ms (each)':<28} {'young: n, ms':>13}")
    for name, source in sources.items():
        found = measured_in(source, args.repeat, args.images)
        each = ", ".join(f"{ms:.0f}" for ms in found["full"]) or "-"
        print(f"{name:<9} {found['runs']:>7} {found['held']:>12,} {found['garbage_per_query']:>13,.0f} "
              f"{len(found['full']):>11} {each:<28} {found['young']:>5}, {found['young_ms']:>5.0f}")
    print(f"load averages at the end {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
