"""Random-valued VGG-16 weights in the real file layouts, for tests and the bench (no pytest import).

The values have He scale (std sqrt(2 / fan_in)), so activations keep the input's scale through the ReLUs
instead of overflowing or vanishing; biases are small and non-zero so a swapped bias would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.models.weights import COLOUR_AXIS, COLOUR_LAYER, VGG16_LAYERS, VGG16_SHAPES

SEED = 20160828
BIAS_STD = 0.05
MEAN_RGB = np.array([123.68, 116.78, 103.94], np.float32)
GLOBAL_STEP = 0


def random_vgg16_tensors(seed: int = SEED) -> dict[str, np.ndarray]:
    """slim name -> float32 array with the real shapes."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in VGG16_SHAPES.items():
        std = np.sqrt(2.0 / np.prod(shape[:-1])) if name.endswith("/weights") else BIAS_STD
        value = rng.random(shape, dtype=np.float32)  # uniform on [-sqrt(3) std, sqrt(3) std]: fast, same variance
        value -= np.float32(0.5)
        value *= np.float32(2 * np.sqrt(3) * std)
        tensors[name] = value
    return tensors


def write_slim_checkpoint(tensors: dict[str, np.ndarray], path: Path) -> Path:
    """A TF V1 single-file checkpoint like ``vgg_16.ckpt``, with its extra ``mean_rgb`` and ``global_step``."""
    import tensorflow as tf

    names = [*tensors, "vgg_16/mean_rgb", "global_step"]
    values = [*tensors.values(), MEAN_RGB, np.array(GLOBAL_STEP, np.int64)]
    tf.raw_ops.Save(filename=str(path), tensor_names=names, data=values)
    return Path(path)


def keras_layout(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Keras ``.h5`` datasets for ``tensors``: flattened fc kernels, conv1_1 in BGR input order."""
    datasets = {}
    for layer, (shape, keras) in VGG16_LAYERS.items():
        kernel = tensors[f"{layer}/weights"]
        if layer == COLOUR_LAYER:
            kernel = np.flip(kernel, axis=COLOUR_AXIS)
        if not keras.startswith("block"):
            kernel = kernel.reshape(-1, shape[-1])
        datasets[f"{keras}/{keras}_W_1:0"] = np.ascontiguousarray(kernel)
        datasets[f"{keras}/{keras}_b_1:0"] = tensors[f"{layer}/biases"]
    return datasets


def write_keras_h5(tensors: dict[str, np.ndarray], path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        for name, value in keras_layout(tensors).items():
            handle.create_dataset(name, data=value)
    return Path(path)


@dataclass(frozen=True)
class VggFiles:
    tensors: dict[str, np.ndarray]
    checkpoint: Path
    h5: Path


_FILES: VggFiles | None = None


#: Written under ``directory`` once both files are whole.
COMPLETE = "complete"


def session_vgg_files(directory: Path) -> VggFiles:
    """Generate the random weights once per process, and both files under ``directory`` once: processes that
    share it (pytest-xdist's) take turns under a lock, and the files another wrote are used as they are."""
    import fcntl

    global _FILES
    if _FILES is None:
        directory.mkdir(parents=True, exist_ok=True)
        tensors = random_vgg16_tensors()
        checkpoint, h5 = directory / "vgg_16.ckpt", directory / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
        with open(directory / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (directory / COMPLETE).exists():
                write_slim_checkpoint(tensors, checkpoint)
                write_keras_h5(tensors, h5)
                (directory / COMPLETE).touch()
        _FILES = VggFiles(tensors=tensors, checkpoint=checkpoint, h5=h5)
    return _FILES


def remove_session_files() -> None:
    """Delete the two ~550 MB files at session end (pytest keeps its last three temp trees)."""
    if _FILES is not None:
        _FILES.checkpoint.unlink(missing_ok=True)
        _FILES.h5.unlink(missing_ok=True)
