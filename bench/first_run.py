"""The README's first run on a new machine, install excluded: from its index command to the query's answer.

    python bench/first_run.py [--baseline-tree /path/to/another/checkout] [--repeat 2]

Runs the README's Try-it commands (``imgidx index tests/photos --model efficientnet-lite0 --db demo.db``,
then ``imgidx query cat --db demo.db``) as a user would, each a new process, in an empty cache folder
(``IMGIDX_CACHE_DIR``: no converted, int8 or compiled model, as on a new machine) and a new index; then the
same commands again with that cache kept (every later run). ``--baseline-tree`` runs another checkout's code
(``PYTHONPATH``) the same way, alternating with this one, e.g. the tree before issue 24. Prints the wall
seconds of each command, the "model loaded in" of the index summary (loading and building the models), and
what the index run wrote on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "efficientnet-lite0"


def run(tree: Path, argv: list[str], cache: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "IMGIDX_CACHE_DIR": str(cache), "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "indexer", *argv], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: imgidx {' '.join(argv)} failed: {done.stderr}")
    return elapsed, done


def first_answer(tree: Path, folder: Path) -> dict[str, float | str]:
    """Times of the README's commands in an empty cache (first) and again with it (warm)."""
    cache = folder / "cache"
    found: dict[str, float | str] = {}
    for when in ("first", "warm"):
        db = folder / f"demo-{when}.db"
        index_seconds, index = run(tree, ["index", "tests/photos", "--model", MODEL, "--db", str(db)], cache)
        query_seconds, query = run(tree, ["query", "cat", "--db", str(db)], cache)
        assert "chelsea.jpg" in query.stdout, query.stdout
        loaded = re.search(r"model loaded in ([\d.]+) s", index.stdout)
        found[when] = index_seconds + query_seconds
        found[f"{when} index"], found[f"{when} query"] = index_seconds, query_seconds
        found[f"{when} load"] = float(loaded.group(1)) if loaded else float("nan")
        found[f"{when} stderr"] = " | ".join(line for line in index.stderr.splitlines() if line.strip())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, default=None, help="another checkout to time the same way")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    trees = {"this tree": ROOT, **({"baseline": args.baseline_tree.resolve()} if args.baseline_tree else {})}
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {', '.join(f'{k}: {v}' for k, v in trees.items())}")
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                found = first_answer(tree, Path(tmp))
            results[name].append(found)
            print(f"{name:10s} first run: {found['first']:6.1f} s to the answer (index {found['first index']:.1f} s, "
                  f"of which model loaded in {found['first load']:.1f} s; query {found['first query']:.1f} s); "
                  f"warm: {found['warm']:.1f} s (index {found['warm index']:.1f} s, loaded in "
                  f"{found['warm load']:.1f} s; query {found['warm query']:.1f} s); load {os.getloadavg()[0]:.2f}",
                  flush=True)
            print(f"{'':10s} first run's stderr: {found['first stderr'] or '(nothing)'}")
    if args.baseline_tree:
        ratios = [b["first"] / t["first"] for t, b in zip(results["this tree"], results["baseline"])]
        print(f"first run, baseline / this tree: {', '.join(f'{r:.2f}x' for r in ratios)}")
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
