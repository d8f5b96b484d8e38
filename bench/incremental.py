"""The incremental re-run: `imgidx index` over an unchanged folder of 10,000 files (no model may run).

The folder (small JPEGs in 100 sub-folders) is indexed once with EfficientNet-Lite0 at a small working size
(the size changes nothing below; it only keeps the set-up short). Then the same folder is indexed again,
unchanged, and timed twice:

- **CLI**: ``imgidx index FOLDER --db DB`` in a fresh process, as a user or a cron job runs it: interpreter
  start, imports, walk, diff, summary;
- **library**: `indexer.pipeline.index` in this process (walk + diff + bookkeeping only).

Both must report every file unchanged without loading the model; the CLI process must not even import
TensorFlow.

    python bench/incremental.py [--count 10000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from indexer import pipeline, store

OUT = Path(__file__).resolve().parent / "out"
SETUP_SIZE = 64
PER_FOLDER = 100
SIDE = (48, 64)


def no_model(settings):
    raise AssertionError("an unchanged folder loaded the model")


def make_folder(count: int) -> Path:
    folder = OUT / f"small-{count}"
    rng = np.random.default_rng(0)
    for index in range(count):
        path = folder / f"{index // PER_FOLDER:03}" / f"{index:05}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (*SIDE, 3), dtype=np.uint8)).save(path, quality=90)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    folder = make_folder(args.count)
    db = OUT / f"small-{args.count}.db"
    for stale in OUT.glob(f"small-{args.count}.db*"):
        stale.unlink()

    from indexer.models import load_model

    engine = store.open_index(str(db))
    model = load_model("efficientnet-lite0")
    start = time.perf_counter()
    first = pipeline.index(
        engine, [folder], lambda s: model, model=model.name, size=SETUP_SIZE, precision=model.precision, batch=64
    )
    print(f"set-up: {first.indexed} files indexed in {time.perf_counter() - start:.1f} s (size {SETUP_SIZE})")
    assert first.indexed == args.count, first

    code = (
        "import sys, time\nstart = time.perf_counter()\nfrom indexer.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(f'tensorflow imported: {\"tensorflow\" in sys.modules}', file=sys.stderr)"
    )
    start = time.perf_counter()
    cli = subprocess.run(
        [sys.executable, "-c", code, "index", str(folder), "--db", str(db)], capture_output=True, text=True, check=True
    )
    cli_seconds = time.perf_counter() - start
    print(f"CLI re-run:      {cli_seconds:6.2f} s  -> {cli.stdout.strip()}; {cli.stderr.strip()}")

    start = time.perf_counter()
    again = pipeline.index(engine, [folder], no_model)
    library_seconds = time.perf_counter() - start
    assert again.unchanged == args.count and not again.model_loaded, again
    print(f"library re-run:  {library_seconds:6.2f} s  ({args.count / library_seconds:,.0f} files/s, model loaded: no)")
    engine.dispose()


if __name__ == "__main__":
    main()
