"""Which NNCF int8 recipe keeps a network's answers: agreement with fp32 on photos it was not calibrated on.

For one network, each recipe of `RECIPES` (NNCF's default, the MIXED preset, full bias correction,
depthwise convolutions left in floating point, and combinations) is built twice: calibrated on the shipped
photos (`indexer/data/int8_calibration`) and on half of the annotated dev photos (a user's own photos,
``imgidx runtime calibrate``). Every variant, and the bf16 paths for scale, is compared with TensorFlow
fp32 on the other half of the dev photos (`indexer.runtime.agreement`). Models are cached as the runtime
caches them, so a second run only measures.

    python bench/int8_accuracy.py --model efficientnet-lite0
    python bench/int8_accuracy.py --model vgg16-random        # VGG-16 on the random-weight checkpoint
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from indexer import images  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE, load_model  # noqa: E402
from indexer.runtime import agreement, cache, photos, recipes  # noqa: E402
from indexer.runtime import openvino_model as ovm  # noqa: E402

DEV = ROOT.parent / "shared" / "realscenes-dev" / "images"
GROUP_CONV = ("GroupConvolution",)
RECIPES = {
    "default (performance, fast bias corr.)": recipes.Recipe(),
    "mixed preset": recipes.Recipe(preset="mixed"),
    "mixed + full bias correction": recipes.Recipe(preset="mixed", fast_bias_correction=False),
    "depthwise kept in float": recipes.Recipe(ignored_types=GROUP_CONV),
    "mixed + full bias corr. + depthwise float": recipes.Recipe(preset="mixed", fast_bias_correction=False,
                                                            ignored_types=GROUP_CONV),
    "channel alignment": recipes.Recipe(channel_alignment=True),
    "global min/max ranges": recipes.Recipe(activation_ranges="MINMAX"),
    "mean-quantile ranges": recipes.Recipe(activation_ranges="MEAN_QUANTILE"),
    "histogram ranges": recipes.Recipe(activation_ranges="HISTOGRAM"),
    "first layer in float": recipes.Recipe(float_first_layer=True),
    "first layer + depthwise in float": recipes.Recipe(float_first_layer=True, ignored_types=GROUP_CONV),
    "first + depthwise + classifier in float": recipes.Recipe(float_first_layer=True, ignored_types=GROUP_CONV,
                                                          float_last_layers=1),
    "first + depthwise + head (last 1x1 + classifier) in float": recipes.Recipe(
        float_first_layer=True, ignored_types=GROUP_CONV, float_last_layers=2),
    "first + depthwise in float, full bias corr.": recipes.Recipe(float_first_layer=True, ignored_types=GROUP_CONV,
                                                             fast_bias_correction=False),
    "first + depthwise in float, mixed": recipes.Recipe(float_first_layer=True, ignored_types=GROUP_CONV,
                                                   preset="mixed"),
    "first + depthwise + head in float, mixed": recipes.Recipe(float_first_layer=True, ignored_types=GROUP_CONV,
                                                          float_last_layers=2, preset="mixed"),
    "first + depthwise + head in float, mixed, full bias corr.": recipes.Recipe(
        float_first_layer=True, ignored_types=GROUP_CONV, float_last_layers=2, preset="mixed",
        fast_bias_correction=False),
    "first + depthwise + last block + head in float": recipes.Recipe(float_first_layer=True, ignored_types=GROUP_CONV,
                                                                float_last_layers=4),
    "first + depthwise + the stride-32 stage + head in float": recipes.Recipe(
        float_first_layer=True, ignored_types=GROUP_CONV, float_last_layers=12),
}


def add_recipe_option(parser: argparse.ArgumentParser) -> None:
    """For the benches that run the shipped int8 model: ``--int8-recipe N`` runs `RECIPES`' Nth instead."""
    parser.add_argument("--int8-recipe", type=int, default=None,
                        help="run int8 with this recipe of bench/int8_accuracy.py's RECIPES (an index)")


def use_recipe(name: str, index: int | None) -> None:
    """Make recipe ``index`` of `RECIPES` the one the runtime builds and reads for ``name`` in this process."""
    if index is not None:
        label, recipes.INT8_RECIPES[name] = list(RECIPES.items())[index]
        print(f"int8 recipe for {name}: {label} ({recipes.INT8_RECIPES[name].tag})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=DEFAULT_WORKING_SIZE)
    parser.add_argument("--recipes", default=",".join(str(i) for i in range(len(RECIPES))),
                        help="indexes into RECIPES, comma-separated")
    parser.add_argument("--calibrations", default="shipped,dev")
    args = parser.parse_args()

    name, weights = args.model, args.weights
    if name == "vgg16-random":
        from index_throughput import random_checkpoint

        name, weights = "vgg16", str(random_checkpoint())
    dev = sorted(str(p) for p in DEV.glob("*.jpg"))
    calibrate_on, evaluate_on = dev[0::2], dev[1::2]
    held_out = {Path(p).name: images.load(p).pixels for p in evaluate_on}
    print(f"{name} at size {args.size}; {len(held_out)} held-out dev photos; load {os.getloadavg()[0]:.2f}", flush=True)
    reference = load_model(name, weights, "fp32")
    digest = cache.weights_digest(ovm.weights_file(name, weights))
    layers = ovm.layers_of(name)
    for label, candidate in (("TF bf16", load_model(name, weights, "bf16")),
                             ("OpenVINO bf16", ovm.OpenVINOBackbone(name, layers, ovm.fp32_model(
                                 name, weights, digest, print), "bf16"))):
        print(f"  {label:44} {agreement.compare(reference, candidate, held_out, args.size).line()}", flush=True)
    sets = {"shipped": photos.shipped(), "dev": photos.from_paths(calibrate_on)}
    chosen = [list(RECIPES.items())[int(i)] for i in args.recipes.split(",")]
    for set_name in args.calibrations.split(","):
        for label, recipe in chosen:
            start = time.perf_counter()
            try:
                model = ovm.int8_model(name, weights, digest, args.size, sets[set_name], print, False, recipe)
            except Exception as exc:  # noqa: BLE001  (NNCF's own failures: reported, the other recipes go on)
                print(f"  int8 {label:39} calibrated on {set_name:7}: NNCF failed: {type(exc).__name__}: {exc}")
                continue
            built = time.perf_counter() - start
            candidate = ovm.OpenVINOBackbone(name, layers, model, "int8")
            result = agreement.compare(reference, candidate, held_out, args.size)
            print(f"  int8 {label:39} calibrated on {set_name:7} ({built:4.0f} s to build or read): {result.line()}",
                  flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
