"""Model throughput against batch size, per runtime, at the working shape of a 4:3 photo: `--batch`'s defaults.

    python bench/batch_size.py [--model efficientnet-lite0 | vgg16-random] [--runtimes auto,tf]
                               [--batches 1,2,4,8] [--seconds 1.5] [--rounds 10]

Each runtime's network runs both views the indexer runs (`indexer.inference.views`: the working size and the
coarser one) on batches of random pixels; every round times each (runtime, batch) for ``--seconds``, one
after the other, so drift on a shared machine hits them alike. Per runtime: the median images/s of the
rounds, and against batch 8 (the default of every runtime before issue 24) the median of the rounds' own
ratios; the CPU milliseconds per image (median), which other work on a shared machine sways less than the
wall clock; the best batch by each, and what `indexer.runtime.default_batch` picks. Each round runs the
batches in another order (rotated), so none always follows the same one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from index_throughput import model_loader  # noqa: E402

from indexer import images, inference  # noqa: E402
from indexer import runtime as runtimes  # noqa: E402
from indexer.geometry import total_stride  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402

#: The batch every runtime indexed at before issue 24: the ratios are against it.
OLD_DEFAULT = 8


def rate(model, pixels: np.ndarray, poolings, seconds: float) -> tuple[float, float]:
    """Images per second of the indexer's views of ``pixels``, run for about ``seconds``, and the process's
    CPU milliseconds per image (less swayed than the wall clock by other work on the machine)."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        inference.views(model, pixels, poolings)
        done += len(pixels)
    return done / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--runtimes", default="auto,tf")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = {}
    for name in args.runtimes.split(","):
        model = model_loader(args.model, None, args.precision, name)()
        models[(model.runtime if hasattr(model, "runtime") else runtimes.TF, model.precision)] = model
    first = next(iter(models.values()))
    shape = images.working_shape(3000, 4000, DEFAULT_WORKING_SIZE, total_stride(first.layers))
    pixels = np.random.default_rng(0).integers(0, 256, (max(batches), *shape, 3), dtype=np.uint8)
    print(f"{first.name}, input {shape[0]}x{shape[1]} and its coarser view, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}, {args.rounds} rounds of {args.seconds:g} s per batch")
    poolings = {key: inference.Poolings(model) for key, model in models.items()}
    for key, model in models.items():
        for batch in batches:
            inference.views(model, pixels[:batch], poolings[key])  # warm-up (compilation) at this batch
    rates = {(key, batch): [] for key in models for batch in batches}
    cpu = {(key, batch): [] for key in models for batch in batches}
    for round_number in range(args.rounds):
        order = batches[round_number % len(batches):] + batches[:round_number % len(batches)]
        for key, model in models.items():
            for batch in order:
                found, cpu_ms = rate(model, pixels[:batch], poolings[key], args.seconds)
                rates[(key, batch)].append(found)
                cpu[(key, batch)].append(cpu_ms)
    for key, model in models.items():
        print(f"== {model.name} on {key[0]} {key[1]}; default_batch: "
              f"{runtimes.default_batch(key[0], model.name, key[1])}")
        for batch in batches:
            found = rates[(key, batch)]
            against = rates.get((key, OLD_DEFAULT))
            ratio = (f"  {np.median([a / b for a, b in zip(found, against)]):.2f}x batch {OLD_DEFAULT}"
                     if against else "")
            print(f"   batch {batch:>3}: {np.median(found):7.2f} images/s{ratio}; {np.median(cpu[(key, batch)]):6.1f} "
                  f"ms CPU per image (rounds: {', '.join(f'{r:.1f}' for r in found)} images/s)")
        best = max(batches, key=lambda b: np.median(rates[(key, b)]))
        thrifty = min(batches, key=lambda b: np.median(cpu[(key, b)]))
        print(f"   fastest: batch {best}; least CPU per image: batch {thrifty}")
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
