"""The networks on OpenVINO: the TensorFlow graph converted once, run in fp32, bf16 or NNCF int8.

**One definition.** The graph converted is the TensorFlow one `indexer.models` builds, with weights from
the same loaders: slim's ``vgg_16`` with its own fc6-fc8 convolution head (OpenVINO runs that faster than
the ``extract_patches`` head TensorFlow needs), frozen with the loaded weights; EfficientNet-Lite0's traced
``tf.function``. ``openvino.convert_model`` takes either; the class map is the one output kept. Both keep
the ``uint8`` input and the network's own normalisation, so the `Backbone` interface is the TF one.

**Built once, cached** (`indexer.runtime.cache`): the converted fp32 model per network and weights sha256,
and each int8 model per weights, working size, calibration (`indexer.runtime.photos`) and recipe
(`indexer.runtime.recipes`).
A cached model is read, never silently rebuilt: one that cannot be read is an error naming its folder.

**Shipped** (`SHIPPED`): EfficientNet-Lite0's int8 model for the default working size on the shipped
calibration photos, and the object detector's conversion (`indexer.runtime.openvino_detector`), as this
module builds them, come inside the package (`bench/shipped_models.py` copies them from a fresh cache): the
README's first run reads them instead of importing TensorFlow to convert them and NNCF to quantize (half a
minute). A shipped model is used only where its ``built.json`` holds what the cache folder's would (network,
weights or model sha256, working size, int8 model id: `shipped_model`), so it is that folder, built once for
everyone; the cache folder, where one exists, comes first. The text detector's int8 model (`indexer.text`)
ships the same way, but is only ever read from the package: its calibration photos are made by the bench.

**Checked on every load** (`_verify`): ``built.json`` records the sha256 of the model's files when it is
built, and each load hashes them again before OpenVINO reads them, so a damaged file (a flipped byte in
``model.bin`` gives wrong labels without any error from OpenVINO) stops the run before anything is stored,
with the folder to delete. Hashing runs at 0.7-1.7 GB/s on this project's CPUs (SHA-NI; the lower figure
on a busy machine): 12 ms for Lite0's int8 model (5.6 MB) and 37 ms for its fp32 one (19 MB), against about
0.5 s to compile either and run a first batch; 0.3-0.8 s for VGG-16's fp32 one (553 MB), whose weights
alone take seconds to load (bench/RESULTS.md, "Checking cached models"). Cheaper schemes were not worth
their gaps: remembering a verdict per (file, size, mtime) misses a byte changed with its mtime put back,
and hashing in a thread while the model compiles (compiling waits for the first batch) would report the
damage from the middle of a run, as the failure of a photo. The model is not rebuilt on a mismatch: an
index's labels come from that exact model, and a rebuild (another NNCF, another photo folder) could
differ from it.

**int8**: NNCF post-training quantization on the calibration photos, seen at the views the indexer runs.
The recipe per network (`recipes.INT8_RECIPES`) is chosen on held-out agreement with fp32
(`bench/int8_accuracy.py`), retrieval F1 and speed, figures in bench/RESULTS.md.

**Shapes**: working shapes vary with the aspect ratio; one dynamic-shape compilation serves them all
(`SHAPES`, measured in `bench/model_throughput.py --shapes`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import openvino as ov

from indexer.cache import writing
from indexer.errors import CacheError, QuantizedModelError
from indexer.geometry import Geometry, Layer, derive_geometry, minimum_input
from indexer.inference import check_working_size
from indexer.labels import NUM_CLASSES
from indexer.models import backbone_spec, native_stderr_silenced, network_module
from indexer.models.base import cpu_has_bf16
from indexer.runtime import cache, machine, photos
from indexer.runtime.machine import INT8, OPENVINO
from indexer.runtime.recipes import Recipe, quantization_id, recipe_of, split_quantization

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
#: The files of a cached model whose sha256 ``built.json`` records under `DIGESTS_KEY` (`_verify`).
MODEL_FILES = (MODEL_XML, MODEL_BIN)
BUILT_FILE = "built.json"
DIGESTS_KEY = "sha256"
#: The models shipped as package data, one folder each under ``indexer/data`` (module docstring).
SHIPPED = ("openvino_lite0", "openvino_nanodet", "openvino_text")
DEVICE = "CPU"
#: OpenVINO's precision for the layers it runs outside int8 kernels; for int8, the layers left unquantized
#: run in bf16 where the CPU has it (`cpu_has_bf16`), else in fp32.
INFERENCE_HINTS = {"fp32": "f32", "bf16": "bf16", INT8: "bf16" if cpu_has_bf16() else "f32"}
#: How the model is compiled for the working shapes it meets: "static", once per input shape (batch,
#: height, width); "spatial", once per height and width, any batch; "dynamic", once for every shape.
#: Compiled models are kept for the run. Dynamic runs as fast as static once warm (VGG-16 level, Lite0
#: within 6%), compiles once, and holds one model's memory where static adds ~250 MB per shape for VGG-16
#: (bench/RESULTS.md, "OpenVINO: shapes").
SHAPES = "dynamic"
SHAPE_MODES = ("static", "spatial", "dynamic")
#: OpenVINO pins its threads to cores by default; the backbone shares the CPUs with the decoding and
#: detector threads of the same run (and, on a shared machine, with other work), where a pinned thread waits
#: for its busy core while another is free. Unpinned, Lite0 int8 indexed 1.01-1.23x as fast (3 alternating
#: runs of 40 photos, load about 10) and ran its views 1.27x as fast (8 rounds): bench/RESULTS.md, "Fast by
#: default". The detectors run unpinned already.
CPU_PINNING = False
#: The thread budget the Ray engine gives each model actor (`indexer.ray_engine`); TensorFlow reads it too.
THREADS_ENV = "TF_NUM_INTRAOP_THREADS"


# --- The network as TensorFlow builds it -----------------------------------------------------------------


def layers_of(name: str) -> tuple[Layer, ...]:
    """The network's layers, read without importing TensorFlow (`backbone_spec`)."""
    return backbone_spec.layers(name)


def weights_file(name: str, weights: str | None) -> Path:
    """The file the TF runtime would read for ``name`` (the same resolution: argument, environment, cache)."""
    return backbone_spec.weights_path(name, weights)


def _vgg16_graph(weights: str | None):
    from indexer.models import vgg16
    from indexer.models.weights import read_vgg16_weights

    tensors, path = read_vgg16_weights(weights)
    network = vgg16.VGG16(tensors, "fp32", head=vgg16.HEAD_CONV, source=str(path))
    del tensors
    try:
        graph_def, _ = network.frozen_graph()
    finally:
        network.close()
    return graph_def


def _lite0_graph(weights: str | None):
    return network_module("efficientnet-lite0").load(weights=weights, precision="fp32").concrete_function()


EXPORTS: dict[str, Callable] = {"vgg16": _vgg16_graph, "efficientnet-lite0": _lite0_graph}


def convert(name: str, weights: str | None) -> ov.Model:
    """The TF network ``name`` with its weights, as an OpenVINO model with one output: the class map."""
    with native_stderr_silenced():
        model = ov.convert_model(EXPORTS[name](weights))
    class_maps = [
        out for out in model.outputs
        if out.get_partial_shape().rank.get_length() == 4 and out.get_partial_shape()[3].get_length() == NUM_CLASSES
    ]
    if len(class_maps) != 1:
        raise RuntimeError(f"converting {name}: expected one class-map output, got {model.outputs}")
    model = ov.Model([class_maps[0]], model.get_parameters(), name)
    model.inputs[0].get_tensor().set_names({"images"})
    model.outputs[0].get_tensor().set_names({"class_map"})
    return model


# --- Cache -------------------------------------------------------------------------------------------------


def _unreadable(folder: Path, reason: str) -> QuantizedModelError:
    return QuantizedModelError(
        f"cannot read the cached OpenVINO model {folder} ({reason}); delete that folder to build it again"
    )


def _digests(folder: Path) -> dict[str, str]:
    return {name: cache.file_sha256(folder / name) for name in MODEL_FILES}


def _verify(folder: Path, on_build: Callable[[str], None]) -> None:
    """Hash the model's files and compare them with what ``built.json`` recorded when it was built (module
    docstring). A model built before imgidx recorded digests has them recorded now, once."""
    built_path = folder / BUILT_FILE
    built = cache.read_json(built_path)
    if not built:
        raise _unreadable(folder, f"its {BUILT_FILE} is missing or damaged")
    try:
        found = _digests(folder)
    except OSError as exc:
        raise _unreadable(folder, exc.strerror or str(exc)) from None
    recorded = built.get(DIGESTS_KEY)
    if not isinstance(recorded, dict):
        with contextlib.suppress(CacheError):  # a read-only cache: checked from the next imgidx that can write it
            cache.write_json(built_path, {**built, DIGESTS_KEY: found})
            on_build(f"recorded the sha256 of the cached OpenVINO model {folder}, built by an earlier imgidx")
        return
    damaged = [name for name in MODEL_FILES if recorded.get(name) != found[name]]
    if damaged:
        raise _unreadable(folder, f"{' and '.join(damaged)} changed since it was built: its sha256 is not the one "
                                  "recorded")


def _read(folder: Path, on_build: Callable[[str], None]) -> ov.Model:
    _verify(folder, on_build)
    try:
        return ov.Core().read_model(folder / MODEL_XML)
    except Exception as exc:  # OpenVINO raises RuntimeError with its parser's message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _unreadable(folder, reason) from None


def _store(model: ov.Model, folder: Path, built: dict) -> ov.Model:
    """Write ``model`` into ``folder`` whole (a temporary folder renamed into place), with the sha256 of its
    files as written."""
    temporary = cache.temporary_sibling(folder)
    try:
        with writing():
            ov.save_model(model, temporary / MODEL_XML, compress_to_fp16=False)
            built = {**built, "openvino": ov.get_version(), "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     DIGESTS_KEY: _digests(temporary)}
            (temporary / BUILT_FILE).write_text(json.dumps(built, indent=1, sort_keys=True) + "\n")
            os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return model


def fp32_model(name: str, weights: str | None, digest: str, on_build: Callable[[str], None]) -> ov.Model:
    """The converted network, from the cache or converted now (and cached)."""
    return cached_fp32(name, digest, lambda: convert(name, weights), {"model": name, "weights_sha256": digest},
                       on_build)


def cached_fp32(name: str, digest: str, conversion: Callable[[], ov.Model], record: dict,
                on_build: Callable[[str], None]) -> ov.Model:
    """A network's fp32 conversion from the cache folder of ``(name, digest)``, or ``conversion()`` now, stored
    there with ``record`` (the backbones' and the object detector's alike)."""
    folder = cache.fp32_dir(name, digest)
    if folder.is_dir():  # complete (renamed into place whole): read without the lock, which a read-only cache refuses
        return _read(folder, on_build)
    shipped = shipped_model({**record, QUANTIZATION_KEY: ""})
    if shipped is not None:
        return _read(shipped, on_build)
    with cache.build_lock(folder):
        if folder.is_dir():
            return _read(folder, on_build)
        on_build(f"converting {name} to OpenVINO (once; cached in {folder})")
        return _store(conversion(), folder, record)


@contextlib.contextmanager
def _nncf_output(progress: bool):
    """NNCF draws its progress bars on stdout: onto stderr with ``progress``, else nowhere."""
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def quantize(model: ov.Model, samples: Iterable[np.ndarray], recipe: Recipe, progress: bool = False) -> ov.Model:
    """``model`` quantized to int8 by NNCF, its ranges measured on ``samples`` (uint8 batches of one)."""
    machine.require_nncf()
    import nncf

    data = list(samples)
    if not data:
        raise QuantizedModelError("no calibration photo could be read")
    with _nncf_output(progress):
        return nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), **recipe.nncf_arguments(model))


def int8_model(name: str, weights: str | None, digest: str, size: int, photo_set: photos.PhotoSet,
               on_build: Callable[[str], None], progress: bool, recipe: Recipe | None = None) -> ov.Model:
    """The int8 network for ``size`` calibrated on ``photo_set``, from the cache or built now (and cached)."""
    recipe = recipe or recipe_of(name)
    folder = cached_int8(name, digest, size, photo_set.id, recipe)
    if folder.is_dir():
        return _read(folder, on_build)
    quantization = f"{photo_set.id}-{recipe.tag}"
    shipped = shipped_int8(name, digest, size, quantization)
    if shipped is not None:
        return _read(shipped, on_build)
    with cache.build_lock(folder):
        if folder.is_dir():
            return _read(folder, on_build)
        fp32 = fp32_model(name, weights, digest, on_build)
        on_build(f"quantizing {name} to int8 for size {size} on {len(photo_set.paths)} calibration photos "
                 f"(once; cached in {folder})")
        quantized = quantize(fp32, photos.samples(photo_set, layers_of(name), size), recipe, progress)
        built = {"model": name, "weights_sha256": digest, "working_size": size, "calibration": photo_set.id,
                 "photos": list(photo_set.paths), "recipe": asdict(recipe), QUANTIZATION_KEY: quantization}
        return _store(quantized, folder, built)


def cached_int8(name: str, digest: str, size: int, calibration: str, recipe: Recipe | None = None) -> Path:
    return cache.int8_dir(name, digest, size, f"{calibration}-{(recipe or recipe_of(name)).tag}")


#: The int8 model id in an int8 model's ``built.json``; a converted (float) model has none.
QUANTIZATION_KEY = "quantization"


def shipped_folder(folder_name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "data" / folder_name


def shipped_model(wanted: dict) -> Path | None:
    """The shipped folder (`SHIPPED`) whose ``built.json`` holds every item of ``wanted`` (a missing
    `QUANTIZATION_KEY` counting as empty), if one does."""
    for folder_name in SHIPPED:
        folder = shipped_folder(folder_name)
        built = {QUANTIZATION_KEY: "", **cache.read_json(folder / BUILT_FILE)}
        if all(built.get(key) == value for key, value in wanted.items()):
            return folder
    return None


def read_shipped(wanted: dict) -> ov.Model | None:
    """The shipped model `shipped_model` finds for ``wanted``, its files checked (`_verify`), or None."""
    folder = shipped_model(wanted)
    return None if folder is None else _read(folder, lambda message: None)


def shipped_int8(name: str, digest: str, size: int, quantization: str) -> Path | None:
    """The shipped folder holding the int8 model the cache would hold for these, if one does."""
    return shipped_model({"model": name, "weights_sha256": digest, "working_size": size,
                          QUANTIZATION_KEY: quantization})


def _photo_set(name: str, digest: str, size: int, quantization: str) -> photos.PhotoSet:
    """The photos behind ``quantization`` (`recipes.quantization_id`), for a model not built yet: the
    shipped ones with today's recipe only (a user's calibration is built by ``imgidx runtime calibrate``,
    which has their folder; another recipe's model is gone with the imgidx that made it)."""
    calibration, tag = split_quantization(quantization)
    where = cache.int8_dir(name, digest, size, quantization).parent
    if tag != recipe_of(name).tag:
        raise QuantizedModelError(
            f"the int8 model of {name} for size {size} ({quantization}) was quantized with another recipe "
            f"than this imgidx's and is not in the cache ({where}): rebuild the index with --reindex"
        )
    shipped = photos.shipped()
    if calibration == shipped.id:
        return shipped
    raise QuantizedModelError(
        f"the int8 model of {name} for size {size} calibrated on {calibration} is not in the cache "
        f"({where}): run imgidx runtime calibrate FOLDER --model {name} --size {size} on those photos again, "
        f"or rebuild the index with --reindex"
    )


# --- The backbone --------------------------------------------------------------------------------------------


@dataclass
class OpenVINOBackbone:
    """A converted network on OpenVINO's CPU plugin, with the interface of `indexer.models.base.Backbone`.

    The model is compiled when first run, for every shape or per shape (`SHAPES`), and kept.
    """

    name: str
    layers: tuple[Layer, ...]
    model: ov.Model
    precision: str
    quantization: str = ""
    shapes: str = SHAPES
    threads: int | None = None
    runtime: str = field(default=OPENVINO, init=False)
    compiled: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.shapes not in SHAPE_MODES:
            raise ValueError(f"shapes must be one of {', '.join(SHAPE_MODES)}, got {self.shapes!r}")
        self.core = ov.Core()
        self.config = {"INFERENCE_PRECISION_HINT": INFERENCE_HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY",
                       "ENABLE_CPU_PINNING": CPU_PINNING}
        threads = self.threads or int(os.environ.get(THREADS_ENV, "0") or 0)
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.smallest = minimum_input(self.layers)

    def compiled_for(self, shape: tuple[int, ...]):
        key = {"static": tuple(shape), "spatial": (-1, *shape[1:]), "dynamic": None}[self.shapes]
        if key not in self.compiled:
            model = self.model
            if key is not None:
                model = model.clone()
                model.reshape({model.inputs[0]: ov.PartialShape(list(key))})
            self.compiled[key] = self.core.compile_model(model, DEVICE, self.config)
        return self.compiled[key]

    def class_map(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB -> ``(N, h, w, 1000)`` float32 logits."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        if min(images.shape[1:3]) < self.smallest:
            raise ValueError(f"{self.name} needs images of at least {self.smallest}x{self.smallest} px, "
                             f"got {images.shape[1:3]}")
        if images.shape[0] == 0:
            return np.zeros((0, *self.geometry(images.shape[1:3]).map_shape, NUM_CLASSES), np.float32)
        return self.compiled_for(images.shape)(np.ascontiguousarray(images))[0]

    def geometry(self, input_hw: tuple[int, int]) -> Geometry:
        return derive_geometry(self.layers, input_hw)

    def close(self) -> None:
        self.compiled.clear()


def load(name: str, weights: str | None, precision: str, *, size: int, quantization: str = "",
         on_build: Callable[[str], None] | None = None, progress: bool = False) -> OpenVINOBackbone:
    """``name`` on OpenVINO at ``precision``; int8 for working ``size`` as ``quantization`` names it
    (`recipes.quantization_id`; default: the current calibration with today's recipe)."""
    on_build = on_build or (lambda message: None)
    layers = layers_of(name)
    check_working_size(name, layers, size)
    digest = cache.weights_digest(weights_file(name, weights))
    if precision == INT8:
        quantization = quantization or quantization_id(name, photos.active(name, size))
        folder = cache.int8_dir(name, digest, size, quantization)
        shipped = None if folder.is_dir() else shipped_int8(name, digest, size, quantization)
        if folder.is_dir() or shipped is not None:
            model = _read(shipped or folder, on_build)
        else:
            model = int8_model(name, weights, digest, size, _photo_set(name, digest, size, quantization),
                               on_build, progress)
    else:
        model, quantization = fp32_model(name, weights, digest, on_build), ""
    return OpenVINOBackbone(name, layers, model, precision, quantization)


def calibrate(name: str, weights: str | None, size: int, photo_set: photos.PhotoSet,
              on_build: Callable[[str], None] | None = None, progress: bool = False) -> Path:
    """Build (or find) the int8 model calibrated on ``photo_set`` and make it the current calibration."""
    check_working_size(name, layers_of(name), size)
    digest = cache.weights_digest(weights_file(name, weights))
    int8_model(name, weights, digest, size, photo_set, on_build or (lambda message: None), progress)
    photos.activate(name, size, photo_set.id)
    return cached_int8(name, digest, size, photo_set.id)
