"""Backbone throughput at the indexer's working size, against the machine's GEMM rate and the seed's graph.

For every backbone in the registry that loads (VGG-16 on random weights when the real checkpoint is absent;
the output says so), at batch sizes 1/4/8: images/second and achieved GFLOP/s (FLOPs counted on the graph),
the machine's fp32/bf16 GEMM rate measured in the same run, the speed-up of the default path over the
straightforward fp32 slim VGG-16 at batch 1, and how well the default path agrees with fp32 on real photos:
the share of class-map positions with the same top class, and the top-5 overlap on the seed's 224 central
crop.

    python bench/model_throughput.py            # ~2-4 minutes
    python bench/model_throughput.py --quick    # ~1 minute
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from indexer.errors import ImgidxError  # noqa: E402
from indexer.labels import classes  # noqa: E402
from indexer.models import REGISTRY  # noqa: E402
from indexer.models.base import cpu_has_bf16, resolve_precision  # noqa: E402

WORKING_SIZE = 448
SEED_RESIZE, SEED_CROP = 256, 224
TOP_K = 5
GEMM_SIZE = 4096
FULL = {"batches": (1, 4, 8), "fp32_batches": (1, 4), "min_seconds": 3.0, "min_repeats": 2, "gemm_repeats": 3}
QUICK = {"batches": (1, 4), "fp32_batches": (1,), "min_seconds": 1.0, "min_repeats": 1, "gemm_repeats": 2}
PHOTOS = {
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "astronaut": data.astronaut,
    "rocket": data.rocket,
    "motorcycle_left": lambda: data.stereo_motorcycle()[0],
}


def photos() -> dict[str, np.ndarray]:
    return {name: np.asarray(load())[..., :3] for name, load in PHOTOS.items()}


def squash(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def seed_crop(image: np.ndarray) -> np.ndarray:
    """vgg_preprocessing's eval path: aspect-preserving resize (smaller side 256), central 224 crop."""
    h, w = image.shape[:2]
    scale = SEED_RESIZE / min(h, w)
    nh, nw = max(SEED_RESIZE, round(h * scale)), max(SEED_RESIZE, round(w * scale))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - SEED_CROP) // 2, (nw - SEED_CROP) // 2
    return resized[top:top + SEED_CROP, left:left + SEED_CROP]


def gemm_gflops(precision: str, size: int, repeats: int) -> float:
    """Best of a plain and a bias-fused ``tf.matmul`` of two size x size matrices (TF picks different kernels)."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    best = 0.0
    for fused in (False, True):
        graph = tf.Graph()
        with graph.as_default():
            a = tf.Variable(tf.cast(tf1.random.normal([size, size], stddev=0.01), dtype))
            b = tf.Variable(tf.cast(tf1.random.normal([size, size], stddev=0.01), dtype))
            product = tf.matmul(a, b)
            if fused:
                product += tf.Variable(tf.zeros([size], dtype))
            fetch = tf.reduce_sum(tf.cast(product[:, :1], tf.float32))
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                session.run(fetch)
                start = time.perf_counter()
                for _ in range(repeats):
                    session.run(fetch)
                best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def count_flops(model, input_hw: tuple[int, int]) -> int | None:
    """FLOPs per image from the model's own profiler count, where it has one."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return model.flops(input_hw) if hasattr(model, "flops") else None


def seconds_per_image(model, batch: np.ndarray, min_seconds: float, min_repeats: int) -> float:
    model.class_map(batch)  # warm-up: oneDNN builds its primitives for this shape
    runs, start = 0, time.perf_counter()
    while runs < min_repeats or time.perf_counter() - start < min_seconds:
        model.class_map(batch)
        runs += 1
    return (time.perf_counter() - start) / runs / len(batch)


def load_vgg16(weights: str | None):
    """Default path, fp32 (same graph), and the seed's straightforward fp32 graph (slim's fc6 convolution)."""
    from indexer.models import vgg16
    from indexer.models.weights import read_vgg16_weights

    try:
        tensors, path = read_vgg16_weights(weights)
        note = f"real weights from {path}"
    except ImgidxError as exc:
        import vgg_fixture

        tensors = vgg_fixture.random_vgg16_tensors()
        note = (f"RANDOM weights: {str(exc).split(':')[0]}; speed is real, agreement is on a random net, "
                f"top-1 names are meaningless")
    models = {
        "default": vgg16.VGG16(tensors, "auto"),
        "fp32": vgg16.VGG16(tensors, "fp32"),
        "baseline": vgg16.VGG16(tensors, "fp32", head=vgg16.HEAD_CONV),
    }
    return models, note


def load_other(name: str):
    module = importlib.import_module(REGISTRY[name][0])
    models = {precision: module.load(weights=None, precision=precision) for precision in ("auto", "fp32")}
    # Its own baseline: the same network in plain fp32 at batch 1 (it has no slower "seed" graph).
    return {"default": models["auto"], "fp32": models["fp32"], "baseline": models["fp32"]}, "weights shipped with the package"


def top_k(logits: np.ndarray) -> set[int]:
    return set(np.argsort(-logits)[:TOP_K].tolist())


def report_speed(models: dict, working: np.ndarray, flops: int | None, gemm: dict, plan: dict) -> None:
    timing = (plan["min_seconds"], plan["min_repeats"])
    baseline = seconds_per_image(models["baseline"], working[:1], *timing) if "baseline" in models else None
    label = "baseline: slim fp32, fc6 as conv" if models["baseline"] is not models["fp32"] else "baseline: fp32"
    rows = [(label, "fp32", 1, baseline)] if baseline else []
    default = models["default"]
    for label, key, batches in ((f"default ({default.precision})", "default", plan["batches"]),
                                ("fp32", "fp32", plan["fp32_batches"])):
        for size in batches:
            batch = working[np.arange(size) % len(working)]
            rows.append((label, models[key].precision, size, seconds_per_image(models[key], batch, *timing)))
    print(f"   {'path':34} {'batch':>5} {'ms/img':>8} {'img/s':>7} {'GFLOP/s':>8} {'% GEMM':>7} {'vs baseline':>12}")
    for label, precision, size, seconds in rows:
        rate = flops / seconds / 1e9 if flops else None
        achieved = f"{rate:8.0f} {100 * rate / gemm[precision]:6.0f}%" if rate else f"{'n/a':>8} {'n/a':>7}"
        versus = f" {baseline / seconds:11.2f}x" if baseline else ""
        print(f"   {label:34} {size:5d} {seconds * 1e3:8.0f} {1 / seconds:7.2f} {achieved}{versus}")


def report_agreement(models: dict, images: dict, working: np.ndarray, crops: np.ndarray) -> None:
    default, exact_model = models["default"], models["fp32"]
    exact, fast = exact_model.class_map(working), default.class_map(working)
    same = (exact.argmax(-1) == fast.argmax(-1)).mean()
    exact_crop, fast_crop = exact_model.class_map(crops), default.class_map(crops)
    overlaps = [len(top_k(e.mean((0, 1))) & top_k(f.mean((0, 1)))) / TOP_K for e, f in zip(exact_crop, fast_crop)]
    print(f"   agreement {default.precision} vs fp32 on {len(images)} photos: same top class at {100 * same:.1f}% "
          f"of {exact.shape[1]}x{exact.shape[2]} map positions; 224-crop top-5 overlap {100 * np.mean(overlaps):.0f}%")
    names = [c.name for c in classes()]
    for photo, e, f in zip(images, exact_crop, fast_crop):
        print(f"     {photo:16} 224-crop top-1: {default.precision} {names[int(f.mean((0, 1)).argmax())]!r}, "
              f"fp32 {names[int(e.mean((0, 1)).argmax())]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repeats (~1 minute)")
    parser.add_argument("--size", type=int, default=WORKING_SIZE, help="working size (square), default 448")
    parser.add_argument("--weights", default=None, help="VGG-16 weights (default: as the CLI resolves them)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL

    import tensorflow as tf

    began = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, bf16 native: {cpu_has_bf16()}, TensorFlow {tf.__version__}, TF default "
          f"threads; working size {args.size}x{args.size}; default precision {resolve_precision('auto')}")
    gemm = {p: gemm_gflops(p, GEMM_SIZE, plan["gemm_repeats"]) for p in ("fp32", "bf16")}
    print(f"GEMM ({GEMM_SIZE}^3 tf.matmul): fp32 {gemm['fp32']:.0f} GFLOP/s, bf16 {gemm['bf16']:.0f} GFLOP/s")

    images = photos()
    working = np.stack([squash(image, args.size) for image in images.values()])
    crops = np.stack([seed_crop(image) for image in images.values()])
    for name in REGISTRY:
        try:
            models, note = load_vgg16(args.weights) if name == "vgg16" else load_other(name)
        except (ImgidxError, ImportError) as exc:
            print(f"\n== {name}: skipped ({type(exc).__name__}: {exc})")
            continue
        flops = count_flops(models["default"], (args.size, args.size))
        print(f"\n== {name} ({note})")
        print(f"   FLOPs per {args.size}x{args.size} image: {f'{flops / 1e9:.2f} G' if flops else 'n/a'}")
        report_speed(models, working, flops, gemm, plan)
        report_agreement(models, images, working, crops)
        for model in models.values():
            if hasattr(model, "close"):
                model.close()
    print(f"\ntotal bench time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
