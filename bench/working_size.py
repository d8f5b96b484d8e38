"""Working size: cell accuracy against speed, to choose `imgidx index --size`'s default.

Each of four real photos (cat, espresso, moped, missile; tests/photos) is pasted into each of the nine
cells of a grey 4:3 canvas in turn (36 composites). For every working size the composites go through the
indexer's own steps (decode, resize to the working shape, class map, `regions.score_batch`); a composite
counts as *localised* when the photo's class set (siblings summed, as a query does) scores highest in the
cell that holds the photo. Also reported: the mean score of the class set in its cell, the mean margin over
the best other cell, and the model's throughput on 4:3 photos at that size (batches of --batch).

    python bench/working_size.py [--model efficientnet-lite0] [--sizes 224,320,384,448,512,640]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from composites import CLASS_SETS, composite  # noqa: E402

from indexer import images, regions  # noqa: E402
from indexer.geometry import total_stride  # noqa: E402
from indexer.models import load_model  # noqa: E402

TIMED_BATCHES = 3


def cell_scores(result: regions.Regions, classes: frozenset[int]) -> np.ndarray:
    scores = np.zeros(regions.CELLS)
    for label in result.cell_labels:
        if label.class_id in classes:
            scores[label.cell] += label.score
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sizes", default="224,320,384,448,512,640")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    model = load_model(args.model, args.weights, args.precision)
    stride = total_stride(model.layers)
    cases = [(name, cell) for name in CLASS_SETS for cell in range(regions.CELLS)]
    pictures = [composite({cell: name}) for name, cell in cases]
    print(f"{model.name} ({model.precision}), {len(cases)} composites of {pictures[0].shape[1]}x{pictures[0].shape[0]}")
    print(f"{'size':>5} {'map':>7} {'localised':>10} {'score':>7} {'margin':>7} {'img/s':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        shape = images.working_shape(*pictures[0].shape[:2], size, stride)
        batch = np.stack([images.resize(p, shape) for p in pictures])
        weights = model.geometry(shape).cell_weights()
        results = []
        for start in range(0, len(batch), args.batch):
            results += regions.score_batch(model.class_map(batch[start : start + args.batch]), weights)
        hits, scores, margins = 0, [], []
        for (name, cell), result in zip(cases, results):
            per_cell = cell_scores(result, CLASS_SETS[name])
            hits += int(per_cell.argmax() == cell)
            scores.append(per_cell[cell])
            margins.append(per_cell[cell] - np.delete(per_cell, cell).max())
        model.class_map(batch[: args.batch])  # warm-up at this shape
        start = time.perf_counter()
        for _ in range(TIMED_BATCHES):
            model.class_map(batch[: args.batch])
        rate = TIMED_BATCHES * args.batch / (time.perf_counter() - start)
        map_hw = "x".join(map(str, model.geometry(shape).map_shape))
        localised = f"{hits}/{len(cases)}"
        print(
            f"{size:>5} {map_hw:>7} {localised:>10} {np.mean(scores):>7.3f} {np.mean(margins):>7.3f} {rate:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
