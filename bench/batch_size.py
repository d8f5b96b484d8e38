"""Model throughput against batch size at the working shape of a 4:3 photo, to choose `--batch`'s default.

    python bench/batch_size.py [--model efficientnet-lite0 | vgg16-random] [--batches 1,2,4,8,16,32] [--seconds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from index_throughput import model_loader  # noqa: E402

from indexer import images  # noqa: E402
from indexer.geometry import total_stride  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    model = model_loader(args.model, None, args.precision)()
    shape = images.working_shape(3000, 4000, DEFAULT_WORKING_SIZE, total_stride(model.layers))
    batches = [int(b) for b in args.batches.split(",")]
    pixels = np.random.default_rng(0).integers(0, 256, (max(batches), *shape, 3), dtype=np.uint8)
    print(f"{model.name} ({model.precision}), input {shape[0]}x{shape[1]}")
    for batch in batches:
        model.class_map(pixels[:batch])  # warm-up at this batch size
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            model.class_map(pixels[:batch])
            done += batch
        print(f"batch {batch:>3}: {done / (time.perf_counter() - start):7.2f} images/s", flush=True)


if __name__ == "__main__":
    main()
