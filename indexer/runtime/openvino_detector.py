"""The object detector (`indexer.objects`) on OpenVINO: NanoDet's TensorFlow function converted once and run
in fp32, bf16 or NNCF int8.

As for the backbones (`indexer.runtime.openvino_model`), the graph converted is the one the TF runtime
traces (`indexer.models.nanodet.NanoDet`), preprocessing included, with a dynamic batch at the input size;
it is cached (`indexer.runtime.cache`) under the digest of the model files and of the code that traces them
(`model_digest`), converted in fp32 and, for int8, quantized by NNCF on the shipped calibration photos
(`photos.shipped`) stretched to the input as the detector sees photos, with `INT8_RECIPE`. A cached model is
read, never rebuilt silently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import openvino as ov

from indexer import images
from indexer.errors import ImageReadError
from indexer.models import native_stderr_silenced
from indexer.models.nanodet_spec import BINS, INPUT_SIZE, MODEL_NAME, NUM_CLASSES, SIDES, graph_path, model_input
from indexer.runtime import cache, photos
from indexer.runtime.machine import INT8
# The backbones' cache reading and writing, shared (private to the runtime package).
from indexer.runtime.openvino_model import DEVICE, INFERENCE_HINTS, THREADS_ENV, _read, _store, cached_fp32, quantize
from indexer.runtime.recipes import Recipe

NAME = MODEL_NAME
INPUT_NAME, OUTPUT_NAMES = "photos", ("scores", "distributions")
#: NNCF's settings for the detector's int8 model. int8 is not the detector's default: no recipe tried kept
#: 95% of the boxes (defaults 89.9%, the mixed preset 91.7%: bench/objects.py, bench/RESULTS.md).
INT8_RECIPE = Recipe()
#: The modules whose code turns the model files into the traced function and its conversion (`model_digest`).
GRAPH_CODE = ("indexer.models.tfjs_graph", "indexer.models.nanodet", "indexer.runtime.openvino_detector")


def model_digest(path: Path | None = None) -> str:
    """sha256 over the model files and the code that traces them (`GRAPH_CODE`), found without importing
    it: a converted or quantized model is rebuilt when either changes."""
    code = hashlib.sha256()
    for module in GRAPH_CODE:
        code.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    # A prefix whose ``.*`` files are the model: cache.weights_digest hashes them all (graph and weights).
    weights = cache.weights_digest((path or graph_path()).with_suffix(""))
    return hashlib.sha256(f"{weights}:{code.hexdigest()}".encode()).hexdigest()


def convert() -> ov.Model:
    """The TF function as an OpenVINO model: ``photos`` (N, 416, 416, 3) uint8 in, ``scores`` and
    ``distributions`` out."""
    from indexer.models.nanodet import NanoDet

    with native_stderr_silenced():
        model = ov.convert_model(NanoDet().concrete_function(INPUT_SIZE))
    # The traced function takes any size; the detector feeds INPUT_SIZE only, so OpenVINO gets it static.
    model.reshape({model.inputs[0]: ov.PartialShape([-1, INPUT_SIZE, INPUT_SIZE, 3])})
    widths = [output.get_partial_shape()[-1].get_length() for output in model.outputs]
    if widths != [NUM_CLASSES, SIDES * BINS]:
        raise RuntimeError(f"converting {NAME}: expected outputs {OUTPUT_NAMES}, got {model.outputs}")
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    for output, name in zip(model.outputs, OUTPUT_NAMES):
        output.get_tensor().set_names({name})
    return model


def fp32_model(digest: str, on_build: Callable[[str], None]) -> ov.Model:
    """The converted network, from the cache or converted now (and cached)."""
    return cached_fp32(NAME, digest, convert, {"model": NAME, "digest": digest}, on_build)


def quantization_id(recipe: Recipe = INT8_RECIPE) -> str:
    """The id of the int8 model: the shipped calibration photos and the recipe."""
    return f"{photos.shipped().id}-{recipe.tag}"


def calibration_samples(photo_set: photos.PhotoSet) -> Iterator[np.ndarray]:
    """Batches of one photo, stretched to the input as `indexer.objects` does; unreadable photos left out."""
    for path in photo_set.paths:
        try:
            decoded = images.load(path, min_side=INPUT_SIZE)
        except ImageReadError:
            continue
        yield model_input([decoded.pixels])


def int8_model(digest: str, on_build: Callable[[str], None], progress: bool = False,
               recipe: Recipe = INT8_RECIPE) -> ov.Model:
    """The int8 network, from the cache or quantized now (and cached)."""
    photo_set = photos.shipped()
    quantization = quantization_id(recipe)
    folder = cache.int8_dir(NAME, digest, INPUT_SIZE, quantization)
    if folder.is_dir():
        return _read(folder, on_build)
    with cache.build_lock(folder):
        if folder.is_dir():
            return _read(folder, on_build)
        fp32 = fp32_model(digest, on_build)
        on_build(f"quantizing {NAME} to int8 on {len(photo_set.paths)} calibration photos (once; cached in "
                 f"{folder})")
        quantized = quantize(fp32, calibration_samples(photo_set), recipe, progress)
        return _store(quantized, folder, {"model": NAME, "digest": digest, "calibration": photo_set.id,
                                          "photos": list(photo_set.paths), "recipe": str(recipe)})


class CompiledDetector:
    """The model compiled for OpenVINO's CPU plugin (one compilation, any batch); `runner` gives each
    detector its own inference request, as a request runs one batch at a time."""

    def __init__(self, model: ov.Model, precision: str, threads: int | None = None):
        config = {"INFERENCE_PRECISION_HINT": INFERENCE_HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        threads = threads or int(os.environ.get(THREADS_ENV, "0") or 0)
        if threads:
            # A thread budget beside other work (the backbone, the face pass): not pinned to cores that
            # other OpenVINO models may hold, as for the faces.
            config.update({"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False})
        self.precision = precision
        self.compiled = ov.Core().compile_model(model, DEVICE, config)

    def runner(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        request = self.compiled.create_infer_request()

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            request.infer({0: np.ascontiguousarray(batch, np.uint8)})
            return tuple(request.get_output_tensor(i).data.copy() for i in range(len(OUTPUT_NAMES)))

        return run


def load(precision: str, threads: int | None = None, on_build: Callable[[str], None] | None = None,
         progress: bool = False, recipe: Recipe = INT8_RECIPE) -> tuple[CompiledDetector, str]:
    """The detector's network compiled at ``precision`` for ``threads`` (`CompiledDetector`), and its int8
    model id (empty unless int8)."""
    on_build = on_build or (lambda message: None)
    digest = model_digest()
    if precision == INT8:
        model, quantization = int8_model(digest, on_build, progress, recipe), quantization_id(recipe)
    else:
        model, quantization = fp32_model(digest, on_build), ""
    return CompiledDetector(model, precision, threads), quantization
