"""The object detector (NanoDet-m, `indexer.objects`) on each runtime and precision: speed and agreement.

**Speed**: ms per photo of the model call (photos already stretched to 416 px) at batch 1, 4 and 8, for
TensorFlow (fp32) and, where OpenVINO is installed (a dependency), OpenVINO fp32, bf16 (where the CPU has it) and int8
(NNCF on the shipped calibration photos; ``--int8-recipes`` adds other recipes). Rounds interleave the paths
at one batch size, seconds apart; a row gives the median of its rounds and the median of the rounds' own
ratios to TensorFlow, so load from elsewhere skews the ratios little.

**Agreement** with TensorFlow fp32, on the dev photos (``../shared/realscenes-dev/images``: COCO train2017,
never shipped), decoded as the indexer hands them over (reduced JPEG decode for working size 448): each
reference box of ``--above`` (0.3) or more is matched, one to one and best score first, to the path's box of
the same class that overlaps it most; "kept" is the share matched with IoU over ``--iou`` (0.9). Also the
matched boxes' IoU and score differences, the path's own boxes over ``--above`` that match no reference box
(new), and per class for the most frequent classes.

    python bench/objects.py                      # ~5 minutes on 2 cores
    python bench/objects.py --quick              # one round of speed, 32 dev photos
    python bench/objects.py --int8-recipes default,mixed,mixed-float-ends
    python bench/objects.py --threads 1 --no-agreement --transposes   # one thread per model; lazy transposes
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from indexer import faces, images, objects, runtime  # noqa: E402
from indexer.labels import COCO_CLASSES, OBJECT_CLASS_BASE  # noqa: E402
from indexer.models.base import cpu_has_bf16  # noqa: E402

#: Read by TensorFlow at start-up and by the OpenVINO models (`indexer.runtime.openvino_model`).
THREADS_ENV = "TF_NUM_INTRAOP_THREADS"

DEV_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "realscenes-dev" / "images"
#: The indexer decodes JPEGs reduced to its working size; the detector gets those pixels.
DECODE_SIDE = 448
BATCHES = (1, 4, 8)
ROUND_SECONDS = 1.0
ROUNDS = 5
AGREEMENT_BATCH = 8
#: The classes shown one by one in the agreement table: the most frequent in the reference boxes.
CLASSES_SHOWN = 8
#: Score floors at which the boxes per photo are counted.
FLOORS = (objects.MIN_SCORE, 0.1, 0.2, 0.3, 0.5)


def int8_recipes():
    from indexer.runtime.recipes import Recipe

    return {
        "default": Recipe(),
        "mixed": Recipe(preset="mixed"),
        "mixed-float-ends": Recipe(preset="mixed", float_first_layer=True, float_last_layers=3),
        "float-ends": Recipe(float_first_layer=True, float_last_layers=3),
        # NanoDet's heads: per level 2 convolutions and the output one; 6 and 9 leave more of them in float.
        "mixed-float-head6": Recipe(preset="mixed", float_first_layer=True, float_last_layers=6),
        "mixed-float-head9": Recipe(preset="mixed", float_first_layer=True, float_last_layers=9),
    }


def load_paths(recipes: list[str], transposes: bool = False) -> dict[str, objects.ObjectDetector]:
    paths = {"TF fp32": objects.build_detector(objects.TF)}
    if transposes:
        from indexer.models.nanodet import NanoDet

        paths["TF fp32, moved transposes"] = objects.ObjectDetector(NanoDet(lazy_transposes=False), "tf", "fp32")
    if not runtime.openvino_installed():
        print("OpenVINO not installed: TensorFlow only")
        return paths
    paths["OV fp32"] = objects.build_detector(objects.OPENVINO, "fp32")
    if cpu_has_bf16():
        paths["OV bf16"] = objects.build_detector(objects.OPENVINO, "bf16")
    if not runtime.cpu_has_int8_dot():
        print("no int8 dot-product instructions: int8 left out")
        return paths
    from indexer.runtime import openvino_detector

    for name in recipes:
        recipe = int8_recipes()[name]
        compiled, quantization = openvino_detector.load(runtime.INT8, recipe=recipe,
                                                        on_build=lambda m: print("  ", m, flush=True))
        paths[f"OV int8 {name}"] = objects.ObjectDetector(compiled.runner(), objects.OPENVINO, runtime.INT8,
                                                          quantization)
    return paths


def timed(detector: objects.ObjectDetector, batch: np.ndarray, seconds: float) -> tuple[float, float]:
    """Seconds per photo, of the clock and of this process's CPU, over calls repeated for about ``seconds``."""
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        detector.raw(batch)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls / len(batch), (time.process_time() - cpu) / calls / len(batch)


def report_speed(paths: dict, photos: np.ndarray, batches, rounds: int) -> None:
    print(f"\nspeed: ms per photo of the model call (416x416), median of {rounds} interleaved rounds, of the clock "
          f"and of the process's CPU time; threads {os.environ.get(THREADS_ENV) or 'default'}; "
          f"load {os.getloadavg()[0]:.2f}")
    inputs = {size: photos[np.arange(size) % len(photos)] for size in batches}
    for size in batches:
        for detector in paths.values():
            detector.raw(inputs[size])  # warm-up
    times = {(name, size): [] for name in paths for size in batches}
    for _ in range(rounds):
        for size in batches:
            for name, detector in paths.items():
                times[(name, size)].append(timed(detector, inputs[size], ROUND_SECONDS))
    print(f"   {'path':24} {'batch':>5} {'ms/img':>8} {'vs TF':>7} {'CPU ms/img':>11} {'vs TF':>7}")
    for size in batches:
        for name in paths:
            row = f"   {name:24} {size:5d}"
            for kind in (0, 1):
                mine, tf = [t[kind] for t in times[(name, size)]], [t[kind] for t in times[("TF fp32", size)]]
                ratio = np.median([r / t for t, r in zip(mine, tf)])
                row += f" {1e3 * np.median(mine):{8 if kind == 0 else 11}.1f} {ratio:6.2f}x"
            print(row)
    print(f"   load at the end {os.getloadavg()[0]:.2f}")


def detections(detector: objects.ObjectDetector, photos: list[np.ndarray]) -> list[list]:
    found = []
    for start in range(0, len(photos), AGREEMENT_BATCH):
        found += detector.detect(photos[start:start + AGREEMENT_BATCH])
    return found


def match(reference: list, candidate: list, above: float) -> tuple[list, int]:
    """``(class, reference score, matched candidate score or None, IoU)`` per reference box of ``above`` or
    more, matched one to one (best reference first) to the candidate box of its class overlapping most; and
    the number of candidate boxes of ``above`` or more matched by no reference box of any score."""
    used: set[int] = set()
    pairs = []
    for box in sorted(reference, key=lambda b: -b.confidence):
        if box.confidence < above:
            continue
        options = [(i, c) for i, c in enumerate(candidate) if c.class_id == box.class_id and i not in used]
        if not options:
            pairs.append((box.class_id, box.confidence, None, 0.0))
            continue
        overlaps = faces.iou(np.array(box[1:5]), np.array([c[1:5] for _, c in options]))
        best = int(np.argmax(overlaps))
        used.add(options[best][0])
        pairs.append((box.class_id, box.confidence, options[best][1].confidence, float(overlaps[best])))
    new = 0
    for i, c in enumerate(candidate):
        if c.confidence >= above and i not in used:
            same = [r for r in reference if r.class_id == c.class_id]
            if not same or faces.iou(np.array(c[1:5]), np.array([r[1:5] for r in same])).max() <= 0.5:
                new += 1
    return pairs, new


def report_agreement(paths: dict, photos: list[np.ndarray], above: float, threshold: float) -> dict:
    print(f"\nagreement with TF fp32 on {len(photos)} dev photos: boxes of {above} and up, matched by class and "
          f"IoU; kept = IoU > {threshold}; load {os.getloadavg()[0]:.2f}")
    found = {name: detections(detector, photos) for name, detector in paths.items()}
    reference = found["TF fp32"]
    print(f"   {'path':24} {'ref boxes':>9} {'kept':>7} {'IoU med':>8} {'IoU p5':>7} {'|dscore| mean':>13} "
          f"{'p95':>6} {'new':>5}")
    summary = {}
    for name in [n for n in paths if n != "TF fp32"]:
        pairs, new = [], 0
        for ref, got in zip(reference, found[name]):
            p, n = match(ref, got, above)
            pairs += p
            new += n
        ious = np.array([p[3] for p in pairs])
        deltas = np.array([abs(p[2] - p[1]) for p in pairs if p[2] is not None])
        kept = float((ious > threshold).mean())
        summary[name] = (pairs, kept)
        print(f"   {name:24} {len(pairs):9d} {100 * kept:6.1f}% {np.median(ious):8.3f} "
              f"{np.percentile(ious, 5):7.3f} {deltas.mean():13.4f} {np.percentile(deltas, 95):6.3f} {new:5d}")
    counts: dict[int, int] = {}
    for pairs, _ in list(summary.values())[:1]:
        for p in pairs:
            counts[p[0]] = counts.get(p[0], 0) + 1
    shown = sorted(counts, key=lambda k: -counts[k])[:CLASSES_SHOWN]
    if shown:
        print("   per class (boxes; kept %, mean IoU, mean |dscore|):")
        for name, (pairs, _) in summary.items():
            cells = []
            for klass in shown:
                mine = [p for p in pairs if p[0] == klass]
                ious = np.array([p[3] for p in mine])
                deltas = [abs(p[2] - p[1]) for p in mine if p[2] is not None]
                cells.append(f"{COCO_CLASSES[klass - OBJECT_CLASS_BASE]} {len(mine)}: {100 * (ious > threshold).mean():.0f}%"
                             f" {ious.mean():.3f} {np.mean(deltas) if deltas else float('nan'):.3f}")
            print(f"     {name:22} " + "; ".join(cells))
    return summary


def report_boxes(detector: objects.ObjectDetector, photos: list[np.ndarray]) -> None:
    """How many boxes a photo gets by floor, and what decoding (numpy, after the model) costs per photo."""
    batch = objects.model_input(photos)
    outputs = [detector.raw(batch[start:start + AGREEMENT_BATCH]) for start in range(0, len(batch), AGREEMENT_BATCH)]
    scores = np.concatenate([o[0] for o in outputs])
    distributions = np.concatenate([o[1] for o in outputs])
    print(f"\nboxes per photo (TF fp32, {len(photos)} dev photos, at most {objects.MAX_BOXES}) and decoding cost "
          f"(ms/photo, CPU); load {os.getloadavg()[0]:.2f}")
    for floor in FLOORS:
        cpu = time.process_time()
        counts = [len(objects.photo_boxes(s, d, (416, 416), floor)) for s, d in zip(scores, distributions)]
        spent = (time.process_time() - cpu) / len(photos)
        print(f"   from {floor:4.2f}: mean {np.mean(counts):5.1f}, median {np.median(counts):5.1f}, max {max(counts):3d};"
              f" decoding {1e3 * spent:5.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of speed, 32 dev photos")
    parser.add_argument("--int8-recipes", default="default", help="comma-separated: " + ", ".join(int8_recipes()))
    parser.add_argument("--above", type=float, default=0.3, help="reference boxes from this score")
    parser.add_argument("--iou", type=float, default=0.9, help="IoU a box needs to count as kept")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-agreement", action="store_true")
    parser.add_argument("--transposes", action="store_true",
                        help="add TensorFlow with every Transpose of the graph run as it stands")
    parser.add_argument("--threads", type=int, help="threads per model (TensorFlow's intra-op, OpenVINO's)")
    args = parser.parse_args()
    if args.threads:
        os.environ[THREADS_ENV] = str(args.threads)
    print(f"machine: {os.cpu_count()} CPUs, bf16 native: {cpu_has_bf16()}, int8 dot products: "
          f"{runtime.cpu_has_int8_dot()}; load {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    paths = load_paths(args.int8_recipes.split(","), args.transposes)
    print(f"paths: {', '.join(paths)} (built in {time.perf_counter() - started:.1f} s)")
    files = sorted(DEV_IMAGES.glob("*.jpg"))
    if not files:
        sys.exit(f"no dev photos in {DEV_IMAGES}")
    if args.quick:
        files = files[:32]
    photos = [images.load(path, min_side=DECODE_SIDE).pixels for path in files]
    if not args.no_speed:
        report_speed(paths, objects.model_input(photos[:8]), BATCHES, 1 if args.quick else ROUNDS)
    if not args.no_agreement:
        report_boxes(paths["TF fp32"], photos)
        report_agreement(paths, photos, args.above, args.iou)


if __name__ == "__main__":
    main()
