"""Indexing throughput against model-only throughput and against the seed's way, in one run.

Over a folder of camera-like 4000x3000 JPEGs (bench/photo_folder.py; a quarter are phone portraits with
EXIF orientation 6; ``--photo-size`` for others), with one loaded, warmed-up model:

- **model only**: the images already decoded and resized to the working shape, grouped by shape into
  batches, and nothing but the model timed, at every scale the indexer runs (`indexer.inference.views`);
- **box pass**: the detectors alone on each photo as the indexer hands it over (decoded reduced to the
  working size, then `faces.detection_pixels`), next to the model's time per image: the face pass over the
  whole tiling (today's default, without objects), the object detector (batches of `pipeline.
  DEFAULT_DETECT_BATCH`), and the face pass guided by its people (the default with objects);
- **imgidx index**: `indexer.pipeline.index` into a fresh SQLite index (walk, read, sha256, reduced-size
  decode, resize, model, boxes, region scores, commits), timed end to end, once as issue 20 found it (faces,
  no objects: the whole tiling) and once with the new default (faces and objects: the guided face pass),
  alternating ``--repeat`` times; ``--no-faces`` leaves faces out of both; with ``--against RUNTIME[:BATCH]``
  (repeatable), the default (faces and objects, the runtime's own batch) instead alternates with each such
  run, e.g. ``--against tf`` (`imgidx index --runtime tf`) and ``--against openvino:8`` (issue 24's baseline);
- **seed-style**: for each of a few images, a new model (graph, session, weights) and the full-resolution
  photo as input, as the seed's notebook does per image.

    python bench/index_throughput.py [--model efficientnet-lite0 | --model vgg16 --weights CKPT]
                                     [--count 48] [--size 448] [--batch 8] [--seed-images 3]
                                     [--photo-size 4000x3000] [--one-view] [--no-faces] [--runtime auto|tf|openvino]
                                     [--face-engine tflite|openvino] [--source ../shared/realscenes-dev/images]
                                     [--repeat 2] [--object-threads N] [--against tf --against openvino:8]

``--source DIR`` makes the photos from the JPEGs of DIR instead of tests/photos (which hold no people: the
guided face pass would then search every photo whole only).

For VGG-16 without the real checkpoint, ``--model vgg16-random`` writes a random one with tests/vgg_fixture.py
into bench/out (same network, same cost).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from photo_folder import OUT, make_folder  # noqa: E402

from indexer import detect, faces, images, inference, pipeline, regions, store  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402
from indexer.geometry import total_stride  # noqa: E402
from indexer import runtime as runtimes  # noqa: E402


def random_checkpoint() -> Path:
    """VGG-16's checkpoint with random weights (tests/vgg_fixture.py), written into bench/out once."""
    checkpoint = OUT / "vgg16-random" / "vgg_16.ckpt"
    if not checkpoint.exists():
        from vgg_fixture import random_vgg16_tensors, write_slim_checkpoint

        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        write_slim_checkpoint(random_vgg16_tensors(), checkpoint)
    return checkpoint


def model_loader(name: str, weights: str | None, precision: str, runtime: str = runtimes.TF,
                 size: int = DEFAULT_WORKING_SIZE):
    """A zero-argument loader; ``vgg16-random`` is VGG-16 with a generated checkpoint (same network, same cost)."""
    if name == "vgg16-random":
        name, weights = "vgg16", str(random_checkpoint())
    return lambda: runtimes.load(name, weights, runtime, precision, size=size, on_build=print, progress=True)


def prepared(model, folder: Path, size: int) -> tuple[dict[tuple[int, int], list[np.ndarray]], float]:
    """The folder's images at their working shapes, and the CPU seconds per image that the indexer's
    worker steps took to get them there (read, sha256, reduced-size decode, resize; one thread)."""
    stride = total_stride(model.layers)
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    paths = sorted(folder.glob("*.jpg"))
    start = time.thread_time()
    for path in paths:
        data = images.read_file(path)
        hashlib.sha256(data).hexdigest()
        decoded = images.decode(data, str(path), size)
        shape = images.working_shape(decoded.height, decoded.width, size, stride)
        groups.setdefault(shape, []).append(images.resize(decoded.pixels, shape))
    return groups, (time.thread_time() - start) / len(paths)


def model_only(model, groups: dict[tuple[int, int], list[np.ndarray]], batch: int) -> tuple[float, float]:
    """Images per second of the model alone (every view), batched by working shape, and its CPU seconds per image."""
    batches = [np.stack(g[i : i + batch]) for g in groups.values() for i in range(0, len(g), batch)]
    poolings = inference.Poolings(model)
    for shape_batch in {b.shape: b for b in batches}.values():
        inference.views(model, shape_batch, poolings)  # warm-up, once per shape and batch size
    count = sum(len(b) for b in batches)
    start, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        inference.views(model, b, poolings)
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count


def box_pass(face_detector, object_detector, folder: Path, size: int, batch: int) -> dict[str, float]:
    """Per photo, in seconds and CPU seconds: the face pass over the whole tiling, the object detector in
    batches of ``batch``, and the face pass guided by its people; and the windows of each face pass."""
    photos = []
    for path in sorted(folder.glob("*.jpg")):
        decoded = images.decode(images.read_file(path), str(path), size)
        photos.append((faces.detection_pixels(decoded.pixels), (decoded.width, decoded.height)))
    face_detector.detect(*photos[0])  # warm-up
    object_detector.detect([photos[0][0]] * batch, [photos[0][1]] * batch)
    timed = {}
    start, cpu = time.perf_counter(), time.process_time()
    for pixels, photo_size in photos:
        face_detector.detect(pixels, photo_size)
    timed["faces"] = ((time.perf_counter() - start) / len(photos), (time.process_time() - cpu) / len(photos))
    start, cpu = time.perf_counter(), time.process_time()
    people = []
    for i in range(0, len(photos), batch):
        chunk = photos[i : i + batch]
        people += [detect.people(found) for found in
                   object_detector.detect([p for p, _ in chunk], [s for _, s in chunk])]
    timed["objects"] = ((time.perf_counter() - start) / len(photos), (time.process_time() - cpu) / len(photos))
    start, cpu = time.perf_counter(), time.process_time()
    for (pixels, photo_size), guide in zip(photos, people):
        detect.guided_faces(face_detector, pixels, photo_size, guide)
    timed["guided faces"] = ((time.perf_counter() - start) / len(photos), (time.process_time() - cpu) / len(photos))

    def windows(guide, pixels, photo_size):
        sx, sy = pixels.shape[1] / photo_size[0], pixels.shape[0] / photo_size[1]
        scaled = None if guide is None else [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in guide]
        return faces.window_count(*pixels.shape[:2], faces.LEVELS, scaled)

    timed["windows"] = sum(windows(None, p, s) for p, s in photos) / len(photos)
    timed["guided windows"] = sum(windows(g, p, s) for (p, s), g in zip(photos, people)) / len(photos)
    return timed


def indexed(model, folder: Path, size: int, batch: int, workers: int | None, face_engine: str | None,
            with_faces: bool, with_objects: bool, object_threads: int | None) -> tuple[float, float, pipeline.Summary]:
    """Images per second of a whole `pipeline.index` run into a new index, and the CPUs it kept busy. The
    detector threads' detectors are built and warmed up first, as the model is."""
    from indexer import objects

    threads = workers or os.cpu_count() or 1
    if with_faces:
        warm = faces.Detectors(face_engine)
        for _ in range(threads):
            warm().detect(np.zeros((faces.DETECTION_SIDE, faces.DETECTION_SIDE, 3), np.uint8))
    if with_objects:
        warm = objects.Detectors(threads=object_threads)
        for _ in range(threads):
            warm().detect([np.zeros((faces.DETECTION_SIDE, faces.DETECTION_SIDE, 3), np.uint8)] * pipeline.DEFAULT_DETECT_BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        engine = store.open_index(str(Path(tmp) / "bench.db"))
        start, cpu = time.perf_counter(), time.process_time()
        summary = pipeline.index(
            engine, [folder], lambda settings: model, model=model.name, size=size,
            precision=model.precision, batch=batch, workers=workers, with_faces=with_faces,
            load_detector=faces.Detectors(face_engine), with_objects=with_objects,
            load_object_detector=objects.Detectors(threads=object_threads),
            runtime=getattr(model, "runtime", runtimes.TF),
        )
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        engine.dispose()
    assert summary.indexed == len(list(folder.glob("*.jpg"))), summary
    return summary.indexed / elapsed, cpu / elapsed, summary


def seed_style(load, folder: Path, count: int) -> float:
    """Seconds per image: a new model per image and the full-resolution photo, as in the seed."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    start = time.perf_counter()
    for path in paths:
        model = load()
        pixels = images.load(path).pixels
        model.class_map(pixels[None])
        del model
    return (time.perf_counter() - start) / len(paths)


def compare(model, args, folder: Path) -> None:
    """The default indexing run (faces and objects) alternating with each of ``args.against``, ``--repeat``
    times, each on a new index: their images/s and the default's ratio to each (medians), by the clock and
    per CPU second (images/s over the CPUs the run kept busy): on a shared machine the clock follows the
    share of the CPUs a run gets, the second what it does with them."""
    from indexer import objects

    configurations = {"default": (model, args.batch)}
    for spec in args.against:
        name, _, batch = spec.partition(":")
        other = model_loader(args.model, args.weights, "auto", name, args.size)()
        label = f"{getattr(other, 'runtime', runtimes.TF)} {other.precision}, batch {batch or 'its default'}"
        configurations[label] = (other, int(batch) if batch else None)
    objects.Detectors(threads=args.object_threads or None)()  # built once, before any timing
    rates = {label: [] for label in configurations}
    per_cpu = {label: [] for label in configurations}
    for _ in range(args.repeat):
        for label, (network, batch) in configurations.items():
            rate, cpus, summary = indexed(network, folder, args.size, batch, args.workers, args.face_engine,
                                          not args.no_faces, True, args.object_threads or None)
            rates[label].append(rate)
            per_cpu[label].append(rate / cpus)
            print(f"  {label:32s} {rate:7.2f} images/s, {cpus:.2f} CPUs busy ({rate / cpus:.2f} images per CPU "
                  f"second), {summary.faces_found} faces, {summary.objects_found} objects; load "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
    default, default_per_cpu = rates.pop("default"), per_cpu.pop("default")
    print(f"default ({getattr(model, 'runtime', runtimes.TF)} {model.precision}, its batch): "
          f"{np.median(default):.2f} images/s, {np.median(default_per_cpu):.2f} per CPU second (medians of "
          f"{args.repeat})")
    for label, found in rates.items():
        ratios = [a / b for a, b in zip(default, found)]
        cpu_ratios = [a / b for a, b in zip(default_per_cpu, per_cpu[label])]
        print(f"  against {label}: {np.median(found):.2f} images/s; default / it: {np.median(ratios):.2f}x by the "
              f"clock ({', '.join(f'{r:.2f}' for r in ratios)}), {np.median(cpu_ratios):.2f}x per CPU second "
              f"({', '.join(f'{r:.2f}' for r in cpu_ratios)}); medians of the rounds' ratios")
    print(f"load {os.getloadavg()[0]:.2f} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precision", default="auto", choices=runtimes.PRECISIONS)
    parser.add_argument("--runtime", default="auto", choices=runtimes.RUNTIMES,
                        help="as imgidx index --runtime (the seed-style rows always run TensorFlow, as the seed did)")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--size", type=int, default=DEFAULT_WORKING_SIZE)
    parser.add_argument("--batch", type=int, default=None,
                        help="default: the runtime's (indexer.runtime.default_batch)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed-images", type=int, default=3)
    parser.add_argument("--photo-size", default="4000x3000", help="WxH of the generated photos")
    parser.add_argument("--one-view", action="store_true",
                        help="run only the working-size view, as the indexer did before calibrated scores")
    parser.add_argument("--no-faces", action="store_true", help="index without the face pass")
    parser.add_argument("--face-engine", choices=faces.ENGINES, default=None,
                        help="the engine running the face model (default: OpenVINO where the extra is installed)")
    parser.add_argument("--source", type=Path, default=None, help="make the photos from the JPEGs of this folder")
    parser.add_argument("--repeat", type=int, default=1, help="index runs of each default, alternating")
    parser.add_argument("--against", action="append", default=[], metavar="RUNTIME[:BATCH]",
                        help="also index with this runtime (and batch), alternating with the default")
    parser.add_argument("--object-threads", type=int, default=pipeline.OBJECT_DETECTOR_THREADS,
                        help="OpenVINO threads per object detector (0: OpenVINO's own choice; default: the "
                        "pipeline's, %(default)s)")
    args = parser.parse_args()
    if args.one_view:
        regions.SCALES = regions.SCALES[:1]

    width, height = (int(v) for v in args.photo_size.split("x"))
    folder = make_folder(args.count, (height, width), source=args.source)
    megabytes = sum(p.stat().st_size for p in folder.glob("*.jpg")) / 1e6
    model = model_loader(args.model, args.weights, args.precision, args.runtime, args.size)()
    print(f"{args.count} JPEGs of {args.photo_size} ({megabytes / args.count:.1f} MB each), {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    default_batch = runtimes.default_batch(getattr(model, "runtime", runtimes.TF), model.name, model.precision)
    print(f"{model.name} ({getattr(model, 'runtime', runtimes.TF)} {model.precision}), working size {args.size}, "
          f"batch {args.batch or default_batch}{'' if args.batch else ' (its default)'}")
    if args.against:
        compare(model, args, folder)
        return
    args.batch = args.batch or default_batch

    cores = os.cpu_count() or 1
    groups, decode_cpu = prepared(model, folder, args.size)
    # Model-only before and after the indexing run, so drift on a shared machine shows instead of skewing the ratio.
    before, model_cpu = model_only(model, groups, args.batch)
    from indexer import objects

    detector = faces.Detectors(args.face_engine)()
    args.object_threads = args.object_threads or None
    object_detector = objects.Detectors(threads=args.object_threads)()
    boxes = box_pass(detector, object_detector, folder, args.size, pipeline.DEFAULT_DETECT_BATCH)
    runs = {False: [], True: []}
    for _ in range(args.repeat):
        for with_objects in (False, True):
            runs[with_objects].append(indexed(model, folder, args.size, args.batch, args.workers, args.face_engine,
                                              not args.no_faces, with_objects, args.object_threads))
    after, _ = model_only(model, groups, args.batch)
    model_rate = (before + after) / 2
    bound = min(model_rate, cores / (model_cpu + decode_cpu))
    print(f"model only:      {model_rate:8.2f} images/s  (before {before:.2f}, after {after:.2f}); "
          f"{model_cpu * 1000:.0f} ms CPU per image, {model_cpu * before:.2f} CPUs busy")
    for name, windows in (("faces", "windows"), ("objects", None), ("guided faces", "guided windows")):
        seconds, cpu = boxes[name]
        engine = object_detector.runtime + " " + object_detector.precision if name == "objects" else detector.engine
        extra = f", {boxes[windows]:.1f} windows of {faces.INPUT_SIZE} px" if windows else \
            f", batches of {pipeline.DEFAULT_DETECT_BATCH}"
        print(f"{name + ':':16s}{seconds * 1000:8.0f} ms per image on {engine} ({cpu * 1000:.0f} ms CPU{extra}) = "
              f"{seconds * model_rate:.2f}x the model's {1000 / model_rate:.0f} ms")
    print(f"decode etc.:     {decode_cpu * 1000:8.0f} ms CPU per image (read, sha256, reduced decode, resize); "
          f"decode ceiling {cores / decode_cpu:.1f} images/s on the {cores} CPUs with no model")
    print(f"CPU bound:       {bound:8.2f} images/s  = {bound / model_rate:.1%} of model only, if model and decoding "
          f"share the {cores} CPUs perfectly")
    for with_objects, label in ((False, "faces, no objects (issue 20's default)"), (True, "faces and objects (new default)")):
        if args.no_faces:
            label = label.replace("faces, ", "").replace("faces and ", "")
        print(f"imgidx index, {label}:")
        for index_rate, index_cpus, summary in runs[with_objects]:
            print(
                f"  {index_rate:8.2f} images/s  = {index_rate / model_rate:.1%} of model only; "
                f"{index_cpus:.2f} CPUs busy, {1000 * index_cpus / index_rate:.0f} ms CPU per image; model busy "
                f"{summary.model_seconds / summary.elapsed:.0%} of the run, detector threads: faces "
                f"{summary.face_seconds / summary.elapsed:.2f} and objects {summary.object_seconds / summary.elapsed:.2f} "
                f"busy; writer (scores + SQLite) {summary.write_seconds / summary.elapsed:.0%} and waiting for boxes "
                f"{summary.box_wait_seconds / summary.elapsed:.0%}; {summary.faces_found} faces, "
                f"{summary.objects_found} objects",
                flush=True,
            )
    old_rates = sorted(rate for rate, _, _ in runs[False])
    new_rates = sorted(rate for rate, _, _ in runs[True])
    print(f"new default / old: {np.median(new_rates) / np.median(old_rates):.2f}x (medians of {args.repeat}); "
          f"load {os.getloadavg()[0]:.2f} at the end")
    index_rate = np.median(new_rates)
    if args.seed_images:
        tf_precision = "auto" if args.precision == runtimes.INT8 else args.precision
        seconds = seed_style(model_loader(args.model, args.weights, tf_precision), folder, args.seed_images)
        print(
            f"seed-style:      {1 / seconds:8.3f} images/s  ({seconds:.2f} s per image, {args.seed_images} images); "
            f"imgidx index is {index_rate * seconds:.0f}x faster"
        )


if __name__ == "__main__":
    main()
