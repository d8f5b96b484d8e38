"""What issue 25's new pages cost on the 1,000,000-image synthetic index (``bench/out/synthetic-1000000.db``,
built by ``bench/query_latency.py``; opened read-only), each beside a baseline measured in the same run:

1. **Label counts** (`query.catalog.catalog`, made once per index state in the background): its time
   against one full ``GROUP BY class_id`` over ``image_labels`` (the plain way to count labels, one scan).
2. **Completion** (`query.complete.complete` with the catalog's counts, ``/api/complete``): p50/p95 over
   typed prefixes against the label-only completion it replaces (`query.browse.complete`).
3. **Looser queries** (`query.relax.relaxed`, the ``/looser`` page, never the search page): p50/p95 over
   spatial queries, against the library's search of the same query (the search page's own work).
4. **Search page** (``--pages``): the served ``GET /?q=...`` p50/p95 of this tree against the tree given by
   ``--baseline-tree`` (say, a checkout of main), two `imgidx serve` processes fetched alternately with the
   same queries; the new pages must leave it unchanged.

    python bench/serve_new_pages.py [--db PATH] [--pages --baseline-tree /path/to/main]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from query_latency import CELLS, percentile, query_kinds  # noqa: E402

from indexer import store  # noqa: E402
from query import DEFAULT_MIN_SCORE, browse, catalog, relax, search  # noqa: E402
from query.complete import complete  # noqa: E402

SYNTHETIC = HERE / "out" / "synthetic-1000000.db"
#: Fetches of each query from each server in the page comparison.
REPEAT = 3


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    value = call()
    return (time.perf_counter() - start) * 1000, value


def line(what: str, times: list[float], base: list[float], base_name: str) -> str:
    p50, p95, b50, b95 = (percentile(times, 50), percentile(times, 95), percentile(base, 50), percentile(base, 95))
    return (f"{what}: p50 {p50:.1f} ms, p95 {p95:.1f} ms; {base_name}: p50 {b50:.1f} ms, p95 {b95:.1f} ms; "
            f"p95 ratio {p95 / b95:.2f}")


def label_counts(engine, t, calibration) -> catalog.Catalog:
    with engine.connect() as conn:
        scan_ms, _ = timed(lambda: conn.exec_driver_sql(
            "SELECT class_id, count(*) FROM image_labels GROUP BY class_id").all())
        made_ms, made = timed(lambda: catalog.catalog(conn, t, calibration))
    print(f"label counts: catalog of {len(made.entries)} labels in {len(made.groups)} groups {made_ms / 1000:.2f} s; "
          f"one GROUP BY scan {scan_ms / 1000:.2f} s; ratio {made_ms / scan_ms:.2f}")
    return made


def completion(counts: dict[int, int], prefixes: list[str]) -> None:
    for text in prefixes:  # warm: the lexicon and its sorted names
        complete(text, counts), browse.complete(text)
    new = [timed(lambda: complete(text, counts))[0] for text in prefixes for _ in range(5)]
    old = [timed(lambda: browse.complete(text))[0] for text in prefixes for _ in range(5)]
    print(line(f"completion ({len(prefixes)} prefixes x 5)", new, old, "label-only completion"))


def looser(engine, t, calibration, queries: list[str]) -> None:
    with engine.connect() as conn:
        for text in queries:  # warm
            search.search(conn, text, tables=t, calibration=calibration, limit=48)
        own = [timed(lambda: search.search(conn, text, tables=t, calibration=calibration, limit=48))[0] for text in queries]
        counted = []
        offered = 0
        for text in queries:
            ms, found = timed(lambda: relax.relaxed(conn, text, DEFAULT_MIN_SCORE, t, calibration))
            counted.append(ms)
            offered += len(found.found)
    print(line(f"looser queries ({len(queries)} queries, {offered} offered)", counted, own, "the search itself"))


def serve(tree: Path, db: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`imgidx serve` of ``tree`` on a free port; its standard error (the address, any log) goes to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "IMGIDX_CACHE_DIR": str(HERE / "out" / "serve-cache")}
    with open(log, "w") as errors:
        process = subprocess.Popen([sys.executable, "-m", "indexer", "serve", "--db", str(db), "--port", "0"],
                                   cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=errors)
    for _ in range(600):
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", log.read_text())
        if found:
            return process, found.group(1)
        time.sleep(0.1)
    raise SystemExit(f"the server of {tree} did not start: {log.read_text()[-500:]}")


def pages(db: Path, baseline: Path, queries: list[str]) -> None:
    import httpx

    import tempfile

    logs = Path(tempfile.mkdtemp(prefix="imgidx-bench-"))
    servers = {name: serve(tree, db, logs / f"{n}.log")
               for n, (name, tree) in enumerate((("this tree", ROOT), ("baseline", baseline)))}
    times: dict[str, list[float]] = {name: [] for name in servers}
    try:
        with httpx.Client(timeout=120) as client:
            for text in queries:  # warm both
                for _, url in servers.values():
                    client.get(url, params={"q": text})
            order = list(servers.items())
            for number, text in enumerate(queries * REPEAT):
                # each query from both, the first to ask alternating: the second finds the pages the first read
                for name, (_, url) in order if number % 2 else order[::-1]:
                    ms, response = timed(lambda: client.get(url, params={"q": text}))
                    assert response.status_code == 200, response.text[:200]
                    times[name].append(ms)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    print(line(f"search page GET /?q= ({len(queries)} queries x {REPEAT})", times["this tree"], times["baseline"],
               f"baseline tree {baseline}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=SYNTHETIC)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--pages", action="store_true", help="also compare the served search page with --baseline-tree")
    parser.add_argument("--baseline-tree", type=Path, default=None)
    args = parser.parse_args()
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load: {os.getloadavg()}")
    engine = store.open_index(str(args.db), create=False, readonly=True)
    t = store.tables(engine)
    with engine.connect() as conn:
        calibration = store.read_calibration(conn)
    made = label_counts(engine, t, calibration)
    popular = sorted(made.entries, key=lambda e: -e.photos)[:400]  # the query label distribution
    names = [f'"{e.name}"' if " and " in f" {e.name.lower()} " else e.name for e in popular]
    weights = [e.photos for e in popular]
    rng = random.Random(25)
    prefixes = [rng.choice(names)[:n] for n in (1, 2, 3) for _ in range(args.queries // 3)]
    prefixes += [f"{rng.choice(names)} in {rng.choice(CELLS)[:4]}" for _ in range(args.queries // 3)]
    completion(made.counts_by_class(), prefixes)
    kinds = query_kinds(names, weights, args.queries, seed=25)
    looser(engine, t, calibration, kinds["2-term spatial AND"])
    if args.pages:
        if args.baseline_tree is None:
            raise SystemExit("--pages needs --baseline-tree")
        pages(args.db, args.baseline_tree, kinds["2-term spatial AND"] + kinds["1 term"])
    engine.dispose()
    print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
