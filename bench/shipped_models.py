"""Build the OpenVINO models imgidx ships (`indexer.runtime.openvino_model.SHIPPED`) and copy them into the package.

    python bench/shipped_models.py [--check]

Each is built as a first run would build it into an empty cache (a temporary ``IMGIDX_CACHE_DIR``), with this
imgidx's conversion, recipe and calibration photos, and copied whole (model, weights and ``built.json`` with
their sha256) into ``indexer/data/openvino_lite0`` (EfficientNet-Lite0 int8 at the default working size) and
``indexer/data/openvino_nanodet`` (the object detector, converted). Run it when the Lite0 weights package, the
recipe (`indexer.runtime.recipes`), the shipped calibration photos, or the detector's files or tracing code
(`openvino_detector.GRAPH_CODE`) change: tests/test_runtime_shipped.py says when a shipped model no longer
stands for what the cache would hold. ``--check`` only reports that. Prints the time each build takes, which
a first run saves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="say whether the shipped model is current; copy nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["IMGIDX_CACHE_DIR"] = cache_dir
        from indexer.models import DEFAULT_WORKING_SIZE
        from indexer.models.backbone_spec import LITE0
        from indexer.runtime import cache, current_quantization, openvino_model, photos

        from indexer.runtime import openvino_detector

        digest = cache.weights_digest(openvino_model.weights_file(LITE0, None))
        quantization = current_quantization(LITE0, DEFAULT_WORKING_SIZE)
        detector = openvino_detector.model_digest()
        lite0, nanodet = (openvino_model.shipped_folder(name) for name in openvino_model.SHIPPED)
        found = {
            lite0: openvino_model.shipped_int8(LITE0, digest, DEFAULT_WORKING_SIZE, quantization),
            nanodet: openvino_model.shipped_model({"model": openvino_detector.NAME, "digest": detector,
                                                   openvino_model.QUANTIZATION_KEY: ""}),
        }
        for folder, shipped in found.items():
            print(f"{folder}: {'current' if shipped else 'missing or stale'}; load {os.getloadavg()[0]:.2f}")
        if args.check:
            return
        openvino_model.SHIPPED = ()  # build them as a first run without shipped models would
        builds = {
            lite0: lambda: openvino_model.int8_model(LITE0, None, digest, DEFAULT_WORKING_SIZE, photos.shipped(),
                                                     print, True),
            nanodet: lambda: openvino_detector.fp32_model(detector, print),
        }
        built = {
            lite0: openvino_model.cached_int8(LITE0, digest, DEFAULT_WORKING_SIZE, photos.shipped().id),
            nanodet: cache.fp32_dir(openvino_detector.NAME, detector),
        }
        for target, build in builds.items():
            start = time.perf_counter()
            build()
            print(f"built in {time.perf_counter() - start:.1f} s; load {os.getloadavg()[0]:.2f}")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(built[target], target)
            record = json.loads((target / openvino_model.BUILT_FILE).read_text())
            if "photos" in record:
                record["photos"] = [Path(path).name for path in record["photos"]]  # not this machine's paths
            (target / openvino_model.BUILT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            print(f"copied {built[target]} to {target}")

if __name__ == "__main__":
    main()
