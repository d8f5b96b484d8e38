"""Backbone throughput at the indexer's working size, against the machine's peaks and the seed's graph.

For every backbone in the registry that loads (VGG-16 on random weights when the real checkpoint is absent;
the output says so), at batch sizes 1/4/8: images/second and achieved GFLOP/s (FLOPs counted on the graph)
of each path, all measured in the same run, in interleaved rounds (`report_speed`: the paths at a batch size
run seconds apart, and ratios are medians of each round's own, so load from elsewhere skews them little):

- TensorFlow: the straightforward fp32 slim graph (the baseline), the bf16 default, fp32;
- OpenVINO (with the extra): the same graph converted, in bf16 and NNCF int8 (`indexer.runtime`).

Peaks, measured in the same run: TensorFlow's fp32/bf16 GEMM, and OpenVINO's fp32/bf16/int8 matrix multiply
(`openvino_peaks`: the best single call of a large MatMul and of a VGG-like 3x3 convolution; int8 through
the quantize/dequantize pattern OpenVINO runs on its int8 kernels, as in the quantized networks). Each
row prints its share of the peak of its own arithmetic. Then how well each fast path agrees with fp32 on real photos: the share of class-map positions
with the same top class, and the top-5 overlap on the seed's 224 central crop.

    python bench/model_throughput.py            # ~5-10 minutes on 2 cores (VGG-16 dominates)
    python bench/model_throughput.py --quick    # batch 1 and 8, one round
    python bench/model_throughput.py --shapes   # OpenVINO: compiled per shape vs dynamic shapes
    python bench/model_throughput.py --models efficientnet-lite0 --int8-recipes 10,14   # int8 recipes side by side
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from indexer import images as image_ops  # noqa: E402
from indexer.errors import ImgidxError  # noqa: E402
from indexer.inference import view_inputs  # noqa: E402
from indexer.labels import classes  # noqa: E402
from indexer.models import REGISTRY, network_module  # noqa: E402
from indexer.models.base import cpu_has_bf16, resolve_precision  # noqa: E402
from indexer import runtime  # noqa: E402
from indexer.runtime.agreement import seed_crop, top_k  # noqa: E402
import int8_accuracy  # noqa: E402

WORKING_SIZE = 448
GEMM_SIZE = 4096
#: OpenVINO's peak probes: (M, K, N) of a MatMul (M rows of activations, a constant K x N weight), and
#: (batch, side, channels) of a 3x3 convolution with as many channels out as in (VGG-16's conv4 at 448 px).
PEAK_MATMUL = (1024, 4096, 4096)
PEAK_CONV = (8, 56, 512)
PEAK_PROBES = ("matmul", "conv")
FULL = {"batches": (1, 4, 8), "fp32_batches": (1, 4), "round_seconds": 1.0, "rounds": 5, "gemm_repeats": 3,
        "peak_seconds": 4.0}
QUICK = {"batches": (1, 8), "fp32_batches": (1,), "round_seconds": 1.0, "rounds": 1, "gemm_repeats": 2,
         "peak_seconds": 1.0}
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


def openvino_peaks(seconds: float) -> dict[str, float]:
    """G(FL)OP/s of OpenVINO's matrix-multiply kernels in fp32, bf16 and int8: the best single call over
    ``seconds`` of each of two probes, a large MatMul and a VGG-like 3x3 convolution (`PEAK_PROBES`). int8
    goes through FakeQuantize on both inputs, which OpenVINO's low-precision passes turn into a u8 x i8
    kernel, as in the NNCF models."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)

    def quantized(node, low: float, high: float, levels: int):
        low, high = ops.constant(np.float32(low)), ops.constant(np.float32(high))
        return ops.fake_quantize(node, low, high, low, high, levels)

    def probe(kind: str, int8: bool):
        if kind == "matmul":
            m, k, n = PEAK_MATMUL
            source, weight, count = ops.parameter([m, k], ov.Type.f32), rng.uniform(-1, 1, (n, k)), 2 * m * k * n
        else:
            batch, side, channels = PEAK_CONV
            source = ops.parameter([batch, channels, side, side], ov.Type.f32)
            weight = rng.uniform(-1, 1, (channels, channels, 3, 3))
            count = 2 * batch * side * side * channels * channels * 9
        weight = ops.constant(weight.astype(np.float32))
        lhs, rhs = (quantized(source, 0, 1, 256), quantized(weight, -1, 1, 255)) if int8 else (source, weight)
        out = (ops.matmul(lhs, rhs, False, True) if kind == "matmul"
               else ops.convolution(lhs, rhs, [1, 1], [1, 1], [1, 1], [1, 1]))
        return ov.Model([out], [source]), count

    peaks = {}
    for name, hint in (("fp32", "f32"), ("bf16", "bf16"), ("int8", "bf16")):
        for kind in PEAK_PROBES:
            model, count = probe(kind, name == "int8")
            request = ov.Core().compile_model(
                model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
            ).create_infer_request()
            x = rng.uniform(0, 1, tuple(model.inputs[0].get_shape())).astype(np.float32)
            request.infer({0: x})
            best, end = 0.0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                start = time.perf_counter()
                request.infer({0: x})
                best = max(best, count / (time.perf_counter() - start) / 1e9)
            peaks[(name, kind)] = best
    return peaks


def measure_openvino_peaks(peaks: dict, plan: dict) -> None:
    """Measure OpenVINO's peaks now, next to the rows that are a share of them, into ``peaks``."""
    measured = openvino_peaks(plan["peak_seconds"])
    for precision in ("fp32", "bf16", "int8"):
        peaks[(runtime.OPENVINO, precision)] = max(measured[(precision, kind)] for kind in PEAK_PROBES)
    print("   OpenVINO peaks, best call of a {}x{} by {}x{} MatMul / a 3x3 conv of {}x{}x{}x{}: ".format(
        *PEAK_MATMUL[:2], *PEAK_MATMUL[1:], *PEAK_CONV[:2], PEAK_CONV[1], PEAK_CONV[2]) +
        ", ".join(f"{p} {measured[(p, 'matmul')]:.0f} / {measured[(p, 'conv')]:.0f}" for p in ("fp32", "bf16", "int8")) +
        " G(FL)OP/s; the higher of each pair is the peak a row of that precision is a share of")


def count_flops(model, input_hw: tuple[int, int]) -> int | None:
    """FLOPs per image from the model's own profiler count, where it has one."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return model.flops(input_hw) if hasattr(model, "flops") else None


def timed(model, batch: np.ndarray, seconds: float) -> float:
    """Seconds per image over at least ``seconds`` of repeated calls."""
    runs, start = 0, time.perf_counter()
    while runs < 1 or time.perf_counter() - start < seconds:
        model.class_map(batch)
        runs += 1
    return (time.perf_counter() - start) / runs / len(batch)


def vgg16_weights(weights: str | None) -> tuple[str, str]:
    """The VGG-16 weights to run (the real ones, else bench/out's random checkpoint), and a note saying which."""
    from indexer.models.weights import resolve_vgg16_weights

    try:
        path = resolve_vgg16_weights(weights)
        return str(path), f"real weights from {path}"
    except ImgidxError as exc:
        from index_throughput import random_checkpoint

        return str(random_checkpoint()), (f"RANDOM weights: {str(exc).split(':')[0]}; speed is real, agreement is "
                                          f"on a random net, top-1 names are meaningless")


def load_paths(name: str, weights: str | None, int8_recipes: list[int] = ()):
    """(label, model) of every path for ``name``, the TF baseline first, and a note on the weights; with
    ``int8_recipes``, one int8 row per recipe of bench/int8_accuracy.py instead of the shipped one."""
    note = "weights shipped with the package"
    if name == "vgg16":
        from indexer.models import vgg16
        from indexer.models.weights import read_vgg16_weights

        weights, note = vgg16_weights(weights)
        tensors, _ = read_vgg16_weights(weights)
        paths = {
            "baseline": vgg16.VGG16(tensors, "fp32", head=vgg16.HEAD_CONV),
            "default": vgg16.VGG16(tensors, "auto"),
            "fp32": vgg16.VGG16(tensors, "fp32"),
        }
        del tensors
    else:
        module = network_module(name)
        fp32 = module.load(weights=weights, precision="fp32")
        # Its own baseline: the same network in plain fp32 at batch 1 (it has no slower "seed" graph).
        paths = {"baseline": fp32, "default": module.load(weights=weights, precision="auto"), "fp32": fp32}
    if runtime.openvino_installed():
        def openvino(precision: str):
            return runtime.load_backbone(name, weights, runtime.OPENVINO, precision, size=WORKING_SIZE,
                                         on_build=print, progress=True)

        paths["openvino bf16"] = openvino("bf16")
        if not int8_recipes:
            paths[f"openvino {runtime.INT8}"] = openvino(runtime.INT8)
        for index in int8_recipes:
            int8_accuracy.use_recipe(name, index)
            paths[f"openvino {runtime.INT8} #{index}"] = openvino(runtime.INT8)
    return paths, note


def int8_layers(model, shape: tuple[int, ...]) -> str:
    """How many convolutions and matrix products OpenVINO runs on its int8 kernels, of all of them."""
    executed = model.compiled_for(shape).get_runtime_model()
    kinds = Counter()
    for op in executed.get_ops():
        info = op.get_rt_info()
        layer, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        if layer in ("Convolution", "FullyConnected", "MatMul"):
            kinds[(layer, precision in ("u8", "i8"))] += 1
    int8 = sum(count for (_, quantized), count in kinds.items() if quantized)
    return f"{int8} of {sum(kinds.values())} convolutions/matrix products run int8"


def report_speed(paths: dict, working: np.ndarray, flops: int | None, peaks: dict, plan: dict) -> None:
    """Each round times every path at one batch size after another, so paths compared at a batch size run
    seconds apart; a row shows its best round, and its ratios are medians of the rounds' own ratios."""
    cases = [("baseline", 1)]
    cases += [(key, size) for key in paths if key not in ("baseline", "fp32") for size in plan["batches"]]
    cases += [("fp32", size) for size in plan["fp32_batches"]]
    batches = {size: working[np.arange(size) % len(working)] for size in {s for _, s in cases}}
    for key, size in cases:
        paths[key].class_map(batches[size])  # warm-up: primitives (and OpenVINO's per-shape compilation)
    rounds: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for _ in range(plan["rounds"]):
        for size in sorted(batches):
            for case in [c for c in cases if c[1] == size]:
                rounds[case].append(timed(paths[case[0]], batches[size], plan["round_seconds"]))

    def ratio(reference: tuple[str, int], case: tuple[str, int]) -> float:
        return float(np.median([r / c for r, c in zip(rounds[reference], rounds[case])]))

    default = paths["default"]
    print(f"   {'path':32} {'batch':>5} {'ms/img':>8} {'img/s':>7} {'G(FL)OP/s':>9} {'% peak':>7} "
          f"{'vs baseline':>11} {'vs TF default':>13}")
    for key, size in cases:
        model, seconds = paths[key], min(rounds[(key, size)])
        peak_key = (getattr(model, "runtime", runtime.TF), model.precision)
        label = {"baseline": "baseline: TF fp32" + (", fc6 as conv" if hasattr(model, "head") else ""),
                 "default": f"TF default ({default.precision})", "fp32": "TF fp32"}.get(key, key)
        rate = flops / seconds / 1e9 if flops else None
        share = f"{100 * rate / peaks[peak_key]:6.0f}%" if rate and peak_key in peaks else f"{'n/a':>7}"
        versus = f"{ratio(('default', size), (key, size)):12.2f}x" if ("default", size) in rounds else f"{'':>13}"
        rate_text = f"{rate:9.0f}" if rate else f"{'n/a':>9}"
        baseline_ratio = min(rounds[("baseline", 1)]) / seconds
        print(f"   {label:32} {size:5d} {seconds * 1e3:8.1f} {1 / seconds:7.2f} {rate_text} {share} "
              f"{baseline_ratio:10.2f}x {versus}")


def report_agreement(paths: dict, images: dict, working: np.ndarray, crops: np.ndarray) -> None:
    exact_model = paths["fp32"]
    exact, exact_crop = exact_model.class_map(working), exact_model.class_map(crops)
    names = [c.name for c in classes()]
    for key in [k for k in paths if k not in ("baseline", "fp32")]:
        fast_model = paths[key]
        fast, fast_crop = fast_model.class_map(working), fast_model.class_map(crops)
        same = (exact.argmax(-1) == fast.argmax(-1)).mean()
        overlaps = [len(top_k(e.mean((0, 1))) & top_k(f.mean((0, 1)))) / len(top_k(e.mean((0, 1))))
                    for e, f in zip(exact_crop, fast_crop)]
        label = f"TF default ({fast_model.precision})" if key == "default" else key
        print(f"   agreement {label} vs fp32 on {len(images)} photos: same top class at {100 * same:.1f}% of "
              f"{exact.shape[1]}x{exact.shape[2]} map positions; 224-crop top-5 overlap {100 * np.mean(overlaps):.0f}%")
        changed = [f"{photo} {names[int(f.mean((0, 1)).argmax())]!r} (fp32 {names[int(e.mean((0, 1)).argmax())]!r})"
                   for photo, e, f in zip(images, exact_crop, fast_crop)
                   if e.mean((0, 1)).argmax() != f.mean((0, 1)).argmax()]
        print(f"     224-crop top-1 differs on: {', '.join(changed) if changed else 'none'}")


def shape_study(name: str, weights: str | None, plan: dict) -> None:
    """OpenVINO int8 on a run's worth of working shapes, compiled per shape, per size (any batch) or once
    dynamic: the first pass (with its compiling), then interleaved rounds of the same batches."""
    from indexer.runtime import openvino_model

    if name == "vgg16":
        weights, _ = vgg16_weights(weights)
    base = runtime.load_backbone(name, weights, runtime.OPENVINO, runtime.INT8, size=WORKING_SIZE)
    landscape = np.stack([image_ops.resize(p, (448, 597)) for p in photos().values()] * 2)[:8]
    batches = []
    for shape_batch in (landscape, landscape.transpose(0, 2, 1, 3), landscape[:3]):
        batches += [pixels for pixels, _ in view_inputs(base.layers, np.ascontiguousarray(shape_batch))]
    count = sum(len(b) for b in batches)
    print(f"\n== {name} int8, {len(batches)} batches of {len({b.shape for b in batches})} shapes, {count} images "
          f"(landscape, portrait, a last partial batch; each at both views); load {os.getloadavg()[0]:.2f}")

    def one_pass(model) -> float:
        start = time.perf_counter()
        for batch in batches:
            model.class_map(batch)
        return time.perf_counter() - start

    import psutil

    process = psutil.Process()
    models, first, grown = {}, {}, {}
    for mode in openvino_model.SHAPE_MODES:
        before = process.memory_info().rss
        models[mode] = openvino_model.OpenVINOBackbone(name, base.layers, base.model, base.precision, shapes=mode)
        first[mode] = one_pass(models[mode])
        grown[mode] = (process.memory_info().rss - before) / 2**20
    rounds = {mode: [] for mode in models}
    for _ in range(max(plan["rounds"], 3)):
        for mode, model in models.items():
            rounds[mode].append(one_pass(model))
    for mode in models:
        versus = np.median([s / m for s, m in zip(rounds["static"], rounds[mode])])
        print(f"   {mode:8} first pass (with compiling) {first[mode]:6.2f} s, memory +{grown[mode]:5.0f} MB; then "
              f"{1e3 * min(rounds[mode]) / count:7.1f} ms/img at best, {versus:.2f}x static's speed (median of "
              f"{len(rounds[mode])} interleaved rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batches 1 and 8, one round")
    parser.add_argument("--size", type=int, default=WORKING_SIZE, help="working size (square), default 448")
    parser.add_argument("--weights", default=None, help="VGG-16 weights (default: as the CLI resolves them)")
    parser.add_argument("--models", default=",".join(REGISTRY), help="comma-separated backbones")
    parser.add_argument("--shapes", action="store_true", help="only the OpenVINO shape study")
    parser.add_argument("--int8-recipes", default="", help="comma-separated indexes into bench/int8_accuracy.py's "
                                                           "RECIPES: one int8 row each, in the same rounds")
    args = parser.parse_args()
    int8_recipes = [int(i) for i in args.int8_recipes.split(",") if i]
    plan = QUICK if args.quick else FULL

    import tensorflow as tf

    began = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, bf16 native: {cpu_has_bf16()}, int8 dot products: "
          f"{runtime.cpu_has_int8_dot()}, TensorFlow {tf.__version__}; working size {args.size}x{args.size}; "
          f"TF default precision {resolve_precision('auto')}; --runtime auto picks {runtime.resolve('auto', 'auto')}; "
          f"load {os.getloadavg()[0]:.2f}")
    names = args.models.split(",")
    if args.shapes:
        for name in names:
            shape_study(name, args.weights if name == "vgg16" else None, plan)
        print(f"\nload {os.getloadavg()[0]:.2f}; total bench time {time.perf_counter() - began:.0f} s")
        return
    peaks = {(runtime.TF, p): gemm_gflops(p, GEMM_SIZE, plan["gemm_repeats"]) for p in ("fp32", "bf16")}
    print(f"TF GEMM ({GEMM_SIZE}^3 tf.matmul): fp32 {peaks[(runtime.TF, 'fp32')]:.0f} GFLOP/s, "
          f"bf16 {peaks[(runtime.TF, 'bf16')]:.0f} GFLOP/s")

    images = photos()
    working = np.stack([squash(image, args.size) for image in images.values()])
    crops = np.stack([seed_crop(image) for image in images.values()])
    for name in names:
        try:
            paths, note = load_paths(name, args.weights if name == "vgg16" else None, int8_recipes)
        except (ImgidxError, ImportError) as exc:
            print(f"\n== {name}: skipped ({type(exc).__name__}: {exc})")
            continue
        flops = count_flops(paths["default"], (args.size, args.size))
        print(f"\n== {name} ({note}); load {os.getloadavg()[0]:.2f}")
        print(f"   FLOPs per {args.size}x{args.size} image: {f'{flops / 1e9:.2f} G' if flops else 'n/a'}")
        int8_rows = [key for key in paths if key.startswith(f"openvino {runtime.INT8}")]
        for key in int8_rows:
            print(f"   {key}: {int8_layers(paths[key], working[:1].shape)}")
        if int8_rows:
            measure_openvino_peaks(peaks, plan)
        report_speed(paths, working, flops, peaks, plan)
        report_agreement(paths, images, working, crops)
        for model in paths.values():
            if hasattr(model, "close"):
                model.close()
    print(f"\nload {os.getloadavg()[0]:.2f}; total bench time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
