"""Backbone registry. Names are known without importing TensorFlow; loading one imports it."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from typing import TYPE_CHECKING

from indexer.errors import UnknownModelError

if TYPE_CHECKING:
    from indexer.models.base import Backbone

# name -> (module, one-line description)
REGISTRY: dict[str, tuple[str, str]] = {
    "vgg16": ("indexer.models.vgg16", "TF-Slim VGG-16, fully convolutional (needs the 513 MB checkpoint)"),
    "efficientnet-lite0": (
        "indexer.models.efficientnet_lite0",
        "EfficientNet-Lite0, real ImageNet weights shipped with the package (works offline)",
    ),
}
DEFAULT_MODEL = "vgg16"
#: The shorter side photos are resized to before the backbone runs (`imgidx index --size`); the indexer
#: also runs a coarser pass (`indexer.regions.SCALES`).
DEFAULT_WORKING_SIZE = 448
#: The largest working size imgidx serves; every ``--size`` above it is refused before anything is loaded.
#: Activations grow with the square of the size: VGG-16, the larger network, holds two 64-channel fp32 maps
#: of its first block at once, 2 x 64 x 4 bytes per input pixel, and the widest working shape is S x 2S
#: (`indexer.images.MAX_ASPECT`), so a photo takes 1 KiB x S^2, and a batch of the default 8
#: (`indexer.runtime.DEFAULT_BATCHES`) 8 GiB at 1024: as much as a workstation can spare. Measured (one 2:1
#: photo, `imgidx classify`): VGG-16's peak memory grows from 2.1 GB at 448 to 4.0 GB at 1344, as that
#: formula says; building an int8 model for a size costs more (NNCF measures every layer: Lite0 peaked at
#: 3.0 GB at 896 and 8.3 GB at 1792). bench/RESULTS.md, "Working size and memory". Larger sizes would gain
#: little anyway: the calibration is fitted at `DEFAULT_WORKING_SIZE`.
MAX_WORKING_SIZE = 1024
PRECISIONS = ("auto", "bf16", "fp32")

#: TensorFlow's C++ start-up chatter (oneDNN notices, "no CUDA driver") is noise to a user of a CPU tool.
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
TF_ERRORS_ONLY = "3"
#: Set to see TensorFlow's native start-up messages (and tracebacks in the CLI).
DEBUG_ENV = "IMGIDX_DEBUG"


def model_names() -> list[str]:
    return list(REGISTRY)


def check_weights(name: str, weights: str | None = None) -> None:
    """Refuse at once, with a `WeightsError`, a model whose weights cannot be found: without importing
    TensorFlow (seconds), so a run that cannot load its model stops before it starts or writes anything.
    Only VGG-16's weights are the user's to supply; EfficientNet-Lite0's come with its package."""
    if name == "vgg16":
        from indexer.models.weights import resolve_vgg16_weights

        resolve_vgg16_weights(weights)


def load_model(name: str, weights: str | None = None, precision: str = "auto") -> "Backbone":
    """Build the backbone ``name`` with its weights loaded, ready to run batches."""
    module = network_module(name)
    with native_stderr_silenced():
        return module.load(weights=weights, precision=precision)


def network_module(name: str):
    """The module defining backbone ``name`` (it imports TensorFlow, whose start-up chatter is hidden)."""
    try:
        module_name, _ = REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(REGISTRY)}") from None
    os.environ.setdefault(TF_LOG_LEVEL_ENV, TF_ERRORS_ONLY)
    warnings.filterwarnings("ignore", module=r"(tf_slim|tensorflow|keras)(\.|$)")
    with native_stderr_silenced():
        return importlib.import_module(module_name)


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what native code writes to file descriptor 2 while TensorFlow (or Ray) starts.

    TensorFlow 2.21 logs through absl before any log level applies, so TF_CPP_MIN_LOG_LEVEL alone does not
    silence it. Python exceptions are unaffected: they propagate and the CLI reports them.
    """
    if os.environ.get(DEBUG_ENV):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
