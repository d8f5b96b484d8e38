"""Build the OpenVINO models imgidx ships (`indexer.runtime.openvino_model.SHIPPED`) and copy them into the package.

    python bench/shipped_models.py [--check] [--only openvino_text]

Each is built as a first run would build it into an empty cache (a temporary ``IMGIDX_CACHE_DIR``), with this
imgidx's conversion, recipe and calibration photos, and copied whole (model, weights and ``built.json`` with
their sha256) into ``indexer/data/openvino_lite0`` (EfficientNet-Lite0 int8 at the default working size) and
``indexer/data/openvino_nanodet`` (the object detector, converted). The text detector's int8 model
(``indexer/data/openvino_text``, `indexer.text`) is quantized here from the shipped ONNX file, calibrated on
`bench/text.py`'s `calibration_photos` (signs it makes and realscenes-dev photos, none of its own bench's);
rebuild it when that file or `text.INT8_RECIPE` changes (tests/test_text.py says when). Run it when the
Lite0 weights package, the recipe (`indexer.runtime.recipes`), the shipped calibration photos, or the
detector's files or tracing code (`openvino_detector.GRAPH_CODE`) change: tests/test_runtime_shipped.py says
when a shipped model no longer stands for what the cache would hold. ``--check`` only reports that. Prints the time each build takes, which
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
    parser.add_argument("--only", help="build only this folder (e.g. openvino_text); the others stay as shipped")
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
        from indexer import text

        lite0, nanodet, text_detector = (openvino_model.shipped_folder(name) for name in openvino_model.SHIPPED)
        found = {
            lite0: openvino_model.shipped_int8(LITE0, digest, DEFAULT_WORKING_SIZE, quantization),
            nanodet: openvino_model.shipped_model({"model": openvino_detector.NAME, "digest": detector,
                                                   openvino_model.QUANTIZATION_KEY: ""}),
            text_detector: openvino_model.shipped_model(text.int8_record()),
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
            text_detector: lambda: text_int8(Path(cache_dir)),
        }
        built = {
            lite0: openvino_model.cached_int8(LITE0, digest, DEFAULT_WORKING_SIZE, photos.shipped().id),
            nanodet: cache.fp32_dir(openvino_detector.NAME, detector),
            text_detector: Path(cache_dir) / text.DETECTOR_NAME,
        }
        for target, build in builds.items():
            if args.only and target.name != args.only:
                continue
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

def text_int8(work: Path) -> None:
    """The text detector quantized by NNCF (`text.INT8_RECIPE`) on `bench.text.calibration_photos`, stored in
    ``work / text.DETECTOR_NAME`` as the cache stores a model (files, ``built.json`` with their sha256)."""
    import openvino as ov

    from bench import text as text_bench
    from indexer import text
    from indexer.runtime import openvino_model

    paths = text_bench.calibration_photos(Path(tempfile.mkdtemp(dir=work)))
    print(f"quantizing the text detector on {len(paths)} photos at sides {text.GATE_SIDE} and {text.DETECTION_SIDE}")
    model = ov.Core().read_model(str(text.model_path(text.DETECTOR_FILE)))
    quantized = openvino_model.quantize(model, text_bench.calibration_samples(paths), text.INT8_RECIPE, True)
    openvino_model._store(quantized, work / text.DETECTOR_NAME, {
        **text.int8_record(), "recipe": str(text.INT8_RECIPE), "photos": [path.name for path in paths],
        "calibration": f"bench/text.py calibration_photos (seed {text_bench.CALIBRATION_SEED}), sides "
                       f"{text.GATE_SIDE} and {text.DETECTION_SIDE}"})


if __name__ == "__main__":
    main()
