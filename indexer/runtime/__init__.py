"""Which runtime runs the networks, at which precision: OpenVINO (the default) or TensorFlow (the fallback).

Each network is defined once, in TensorFlow (`indexer.models`). The OpenVINO runtime converts that same
graph with the loaded weights (`indexer.runtime.openvino_model`) and runs it in fp32, bf16, or int8 quantized
after training by NNCF on photos (`indexer.runtime.photos`). Nothing here imports TensorFlow or OpenVINO.

``--runtime auto`` (the default) picks **OpenVINO int8** when

1. OpenVINO is installed (an imgidx dependency since issue 24; a platform without its wheels lacks it),
2. the CPU has int8 dot-product instructions (`INT8_DOT_FLAGS`: AVX512-VNNI, AVX-VNNI or AMX-INT8), and
3. the precision asked is ``auto`` or ``int8``;

otherwise TensorFlow. The rule is what `bench/model_throughput.py` measures: with those
instructions int8 runs well ahead of TensorFlow's bf16, while OpenVINO's own bf16 and fp32 run about level
with TensorFlow's, so an explicit ``--precision bf16`` or ``fp32`` keeps TensorFlow. An index keeps the
runtime, precision and int8 model (calibration photos and recipe) it was built with (`choose`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from indexer.errors import RuntimeChoiceError

if TYPE_CHECKING:
    from indexer.models.base import Backbone
    from indexer.store import IndexSettings

from indexer.runtime import machine
# The machine's facts, named here too: commands read them as ``runtime.INT8``, ``runtime.openvino_installed()``.
from indexer.runtime.machine import (
    AUTO, INSTALL_HINT, INT8, INT8_DOT_FLAGS, OPENVINO, PRECISIONS, RUNTIMES, TF, cpu_flags, cpu_has_int8_dot,
    int8_dot_flags, openvino_installed, require_openvino)

__all__ = [
    "AUTO", "DEFAULT_BATCHES", "FALLBACK_BATCH", "INSTALL_HINT", "INT8", "INT8_DOT_FLAGS", "OPENVINO", "PRECISIONS",
    "RUNTIMES", "TF", "choose",
    "cpu_flags", "cpu_has_int8_dot", "int8_dot_flags",
    "current_quantization", "default_batch", "load", "load_backbone", "machine", "openvino_installed",
    "require_openvino", "resolve",
]

#: Photos per model call (`imgidx index --batch`) that each runtime, network and precision indexes fastest
#: at. The indexer keeps the CPUs busy (decoding, both detectors, the writer), so what counts is the work a
#: batch costs, measured as indexed images per CPU second in whole runs alternating in one process
#: (`bench/index_throughput.py --against`, 40 photos, bench/RESULTS.md "Fast by default", issue 24): Lite0
#: int8 at 8 did 0.96-1.05x what it did at 4 (10 rounds in three runs, median 1.01: no difference that
#: shows), although the model alone on square photos ran 4 faster (issue 15); Lite0 bf16 on TensorFlow at
#: 8 did 1.02x what it did at 4 and at 2. VGG-16 (model alone, `bench/model_throughput.py`) is flat from 4
#: up on both runtimes. Hence 8 throughout for now; a combination that measures otherwise gets its entry.
DEFAULT_BATCHES = {
    (OPENVINO, "efficientnet-lite0", INT8): 8,
    (OPENVINO, "vgg16", INT8): 8,
    (TF, "efficientnet-lite0", "bf16"): 8,
    (TF, "vgg16", "bf16"): 8,
}
#: The batch of any other combination (fp32, OpenVINO bf16, a test's fake network): the default before issue 24.
FALLBACK_BATCH = 8


def default_batch(runtime: str, model: str, precision: str) -> int:
    """The batch ``model`` indexes at by default on ``runtime`` (resolved) at ``precision`` (`DEFAULT_BATCHES`)."""
    return DEFAULT_BATCHES.get((runtime, model, precision), FALLBACK_BATCH)


def resolve(runtime: str, precision: str) -> tuple[str, str]:
    """``(runtime, precision)`` with ``auto`` decided for this machine (module docstring)."""
    from indexer.models.base import resolve_precision  # numpy: not for commands that only query

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if runtime == AUTO:
        wants_int8 = precision == INT8 or (precision == AUTO and machine.cpu_has_int8_dot())
        runtime = OPENVINO if wants_int8 and (precision == INT8 or machine.openvino_installed()) else TF
    if runtime == OPENVINO:
        if not machine.openvino_installed():
            raise RuntimeChoiceError(INSTALL_HINT)
        if precision == AUTO:
            return OPENVINO, INT8 if machine.cpu_has_int8_dot() else resolve_precision(AUTO)
        return OPENVINO, precision
    if precision == INT8:
        raise RuntimeChoiceError("--precision int8 runs on OpenVINO only: use --runtime openvino (or auto)")
    return TF, resolve_precision(precision)


def choose(stored: "IndexSettings | None", model: str, size: int, runtime: str, precision: str,
           reindex: bool) -> tuple[str, str, str]:
    """This run's ``(runtime, precision, quantization)`` for an index built with ``stored`` settings.

    ``auto`` keeps what the index holds for the same model, as ``--precision auto`` always did, where it
    can run on the runtime asked (``--runtime tf`` on an int8 index takes TF's own precision), and so does
    an int8 index's calibration (unless ``reindex``: then the current one, `photos.active`). A new index
    gets what `resolve` picks. ``quantization`` names the int8 model (`recipes.quantization_id`), empty
    otherwise.
    """
    same_model = stored is not None and stored.model == model
    kept = False
    if same_model:
        if precision == AUTO and not (runtime == TF and stored.precision == INT8):
            precision = stored.precision
        if runtime == AUTO and not (stored.runtime == TF and precision == INT8):
            runtime, kept = stored.runtime, True
    try:
        runtime, precision = resolve(runtime, precision)
    except RuntimeChoiceError as exc:
        if not kept:
            raise
        raise RuntimeChoiceError(f"the index holds labels from {stored.describe()}, and {exc}; or rebuild it "
                                 f"with --reindex --runtime tf") from None
    if precision != INT8:
        return runtime, precision, ""
    keep = same_model and not reindex and stored.working_size == size and stored.quantization
    if keep:
        return runtime, precision, stored.quantization
    return runtime, precision, current_quantization(model, size)


def current_quantization(model: str, size: int) -> str:
    """The int8 model a new index of ``model`` at ``size`` gets: the current calibration photos
    (`photos.active`) with today's recipe (`recipes.quantization_id`)."""
    from indexer.runtime import photos, recipes

    return recipes.quantization_id(model, photos.active(model, size))


def load_backbone(model: str, weights: str | None, runtime: str, precision: str, *, size: int,
                  quantization: str = "", on_build: Callable[[str], None] | None = None,
                  progress: bool = False) -> "Backbone":
    """The network ``model`` on ``runtime`` (resolved, not ``auto``) at ``precision``.

    TensorFlow goes through `indexer.models.load_model` as always. OpenVINO builds its model once per
    weights (and, for int8, per working ``size`` and ``quantization``) and caches it; ``on_build`` is
    told, in one line, when that happens, and ``progress`` shows NNCF's progress bars on stderr.
    """
    if runtime == TF:
        from indexer import models

        return models.load_model(model, weights, precision)
    machine.require_openvino()
    from indexer.runtime import openvino_model

    return openvino_model.load(model, weights, precision, size=size, quantization=quantization, on_build=on_build,
                               progress=progress)


def load(model: str, weights: str | None = None, runtime: str = AUTO, precision: str = AUTO, *, size: int,
         on_build: Callable[[str], None] | None = None, progress: bool = False) -> "Backbone":
    """The network as asked, ``auto`` resolved as for a new index (`choose`)."""
    runtime, precision, quantization = choose(None, model, size, runtime, precision, False)
    return load_backbone(model, weights, runtime, precision, size=size, quantization=quantization,
                         on_build=on_build, progress=progress)
