"""A new user's first command without the VGG-16 weights: how fast `imgidx index` refuses, and what it leaves.

Runs ``imgidx index tests/photos --db NEW.db`` (the default model, VGG-16) in fresh processes with an empty
weights cache, against ``imgidx --version`` (the interpreter and the CLI's own start) in the same run, and
prints the median wall and CPU seconds of each, their ratio, and the files the refusals left behind.

    python bench/weights_check.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "photos"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (user + system) of one ``imgidx ARGV`` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "indexer", *argv], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgidx-weights-check-") as scratch:
        work = Path(scratch)
        env = {k: v for k, v in os.environ.items() if k not in ("IMGIDX_VGG16_WEIGHTS", "IMGIDX_DB")}
        env.update({"IMGIDX_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(ROOT)})
        (work / "index").mkdir()
        refusals, baselines = [], []
        for _ in range(args.runs):
            wall, cpu, done = timed(["index", str(PHOTOS), "--db", str(work / "index" / "new.db")], env)
            assert done.returncode == 1 and done.stderr.startswith("Error: no VGG-16 weights found"), done.stderr
            refusals.append((wall, cpu))
            wall, cpu, done = timed(["--version"], env)
            assert done.returncode == 0, done.stderr
            baselines.append((wall, cpu))
        left = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p != work / "index")
    refusal_wall, refusal_cpu = (statistics.median(x) for x in zip(*refusals))
    base_wall, base_cpu = (statistics.median(x) for x in zip(*baselines))
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {args.runs} runs each, medians")
    print(f"imgidx index (no weights): wall {refusal_wall:.2f} s, CPU {refusal_cpu:.2f} s")
    print(f"imgidx --version:          wall {base_wall:.2f} s, CPU {base_cpu:.2f} s")
    print(f"refusal / start-up: {refusal_wall / base_wall:.2f}x wall, {refusal_cpu / base_cpu:.2f}x CPU")
    print(f"files left behind: {', '.join(left) if left else 'none'}")


if __name__ == "__main__":
    main()
