"""TF-Slim VGG-16 run fully convolutionally, as in the seed: one class map per image of any size >= 224 px.

The network is ``tf_slim.nets.vgg.vgg_16`` built once per loaded model in its own ``tf.compat.v1`` graph and
session, fed ``uint8`` RGB batches of any count and size. Two choices make it fast on CPU:

- bf16 (``precision="auto"`` on CPUs with AVX512-BF16/AMX): slim is built on a bf16 input, so it creates
  bf16 variables and oneDNN runs the convolutions on AMX; weights are cast from the fp32 checkpoint.
- fc6-fc8 as matrix products: slim's fc6 is a 7x7 VALID convolution that oneDNN runs several times slower
  than the equivalent ``extract_patches`` + ``matmul`` (measured: ~250 ms of ~350 ms per 448 px image in
  bf16). The explicit head reads slim's own fc6-fc8 variables and gives the same logits (tested).
"""

from __future__ import annotations

import logging
import warnings
from typing import Mapping

import numpy as np
import tensorflow as tf
import tf_slim as slim
from tf_slim.nets import vgg

from indexer.errors import WeightsError
from indexer.geometry import Geometry, derive_geometry, minimum_input
from indexer.labels import NUM_CLASSES
from indexer.models.backbone_spec import VGG16_LAYERS, VGG16_POOL
from indexer.models.base import resolve_precision
from indexer.models.weights import (
    FC6_KERNEL, FC_WIDTH, SCOPE, read_vgg16_weights,
)

tf1 = tf.compat.v1

NAME = "vgg16"
# slim's vgg_preprocessing: RGB means subtracted, no scaling.
_R_MEAN = 123.68
_G_MEAN = 116.78
_B_MEAN = 103.94
MEAN_RGB = (_R_MEAN, _G_MEAN, _B_MEAN)

POOL = VGG16_POOL
LAYERS = VGG16_LAYERS
MIN_INPUT = minimum_input(LAYERS)

HEAD_MATMUL = "matmul"
HEAD_CONV = "conv"
HEADS = (HEAD_MATMUL, HEAD_CONV)
DTYPES = {"bf16": tf.bfloat16, "fp32": tf.float32}


def load(weights: str | None = None, precision: str = "auto") -> "VGG16":
    """Read and check the weights (see ``indexer.models.weights``), then build the network once."""
    resolved = resolve_precision(precision)
    tensors, path = read_vgg16_weights(weights)
    return VGG16(tensors, resolved, source=str(path))


class VGG16:
    """A loaded VGG-16: one graph and session, reused by every ``class_map`` call.

    ``head="conv"`` keeps slim's own fc6-fc8 convolutions (the straightforward graph, for comparison);
    ``finalize=False`` leaves the graph open for callers that add ops (input gradients in tests).
    """

    name = NAME
    layers = LAYERS

    def __init__(self, tensors: Mapping[str, np.ndarray], precision: str = "auto", *, head: str = HEAD_MATMUL,
                 source: str = "weights", finalize: bool = True):
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.precision = resolve_precision(precision)
        self.head = head
        self._dtype = DTYPES[self.precision]
        self._graph = tf.Graph()
        with self._graph.as_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # slim's legacy layers: "layer.apply is deprecated"
            self._images = tf1.placeholder(tf.uint8, [None, None, None, 3], name="images")
            self._centered = tf.cast(self._images, tf.float32) - tf.constant(MEAN_RGB, name="mean_rgb")
            with slim.arg_scope(vgg.vgg_arg_scope()):
                slim_logits, end_points = vgg.vgg_16(
                    tf.cast(self._centered, self._dtype), num_classes=NUM_CLASSES, is_training=False,
                    spatial_squeeze=False, scope=SCOPE,
                )
            variables = {v.op.name: v for v in tf1.global_variables()}
            self._slim_logits = tf.cast(slim_logits, tf.float32)
            if head == HEAD_MATMUL:
                self._logits = tf.cast(_matmul_head(end_points[f"{SCOPE}/pool5"], variables), tf.float32)
            else:
                self._logits = self._slim_logits
            assign, feed = slim.assign_from_values(self._cast_checked(tensors, variables, source))
        self._session = tf1.Session(graph=self._graph)
        self._session.run(assign, feed)
        del feed
        if finalize:
            self._graph.finalize()

    def _cast_checked(self, tensors: Mapping[str, np.ndarray], variables: Mapping[str, tf.Variable],
                      source: str) -> dict[str, np.ndarray]:
        """Every variable of the built network gets a tensor of its exact shape, in its dtype."""
        problems = [f"missing {name}" for name in variables if name not in tensors]
        problems += [
            f"{name} is {list(tensors[name].shape)}, the network needs {var.shape.as_list()}"
            for name, var in variables.items()
            if name in tensors and tuple(tensors[name].shape) != tuple(var.shape.as_list())
        ]
        if problems:
            raise WeightsError(f"{source}: does not fit the network: {'; '.join(problems)}")
        numpy_dtype = self._dtype.as_numpy_dtype
        return {name: np.asarray(tensors[name]).astype(numpy_dtype, copy=False) for name in variables}

    def class_map(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB -> ``(N, h, w, 1000)`` float32 logits."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        if min(images.shape[1:3]) < MIN_INPUT:
            raise ValueError(f"VGG-16 needs images of at least {MIN_INPUT}x{MIN_INPUT} px, got {images.shape[1:3]}")
        if images.shape[0] == 0:
            return np.zeros((0, *self.geometry(images.shape[1:3]).map_shape, NUM_CLASSES), np.float32)
        return self._session.run(self._logits, {self._images: images})

    def geometry(self, input_hw: tuple[int, int]) -> Geometry:
        return derive_geometry(self.layers, input_hw)

    def flops(self, input_hw: tuple[int, int]) -> int:
        """Floating-point operations per image, counted by TF's profiler on the ops that make the class map."""
        graph = tf.Graph()
        logger, level = tf.get_logger(), tf.get_logger().level
        logger.setLevel(logging.ERROR)  # these v1 tools log deprecation notices on first use
        try:
            graph_def = tf1.graph_util.extract_sub_graph(self._graph.as_graph_def(), [self._logits.op.name])
            with graph.as_default():
                static = tf1.placeholder(tf.uint8, [1, *input_hw, 3], name="static_images")
                tf.import_graph_def(graph_def, input_map={self._images.name: static}, name="")
                options = (tf1.profiler.ProfileOptionBuilder(tf1.profiler.ProfileOptionBuilder.float_operation())
                           .with_empty_output().build())
                return int(tf1.profiler.profile(graph, options=options).total_float_ops)
        finally:
            logger.setLevel(level)

    def frozen_graph(self) -> tuple["tf1.GraphDef", str]:
        """The class-map graph with the loaded weights as constants, and the logits' tensor name: the network
        as other runtimes' converters take it (`indexer.runtime.openvino_model`)."""
        logger, level = tf.get_logger(), tf.get_logger().level
        logger.setLevel(logging.ERROR)  # convert_variables_to_constants logs a deprecation notice
        try:
            graph_def = tf1.graph_util.convert_variables_to_constants(
                self._session, self._graph.as_graph_def(), [self._logits.op.name]
            )
        finally:
            logger.setLevel(level)
        return graph_def, self._logits.name

    def close(self) -> None:
        """Free the session's memory (the ~0.3-0.6 GB of weights) before the object is collected."""
        self._session.close()

    def __repr__(self) -> str:
        return f"VGG16(precision={self.precision!r}, head={self.head!r})"


def _matmul_head(pool5: tf.Tensor, variables: Mapping[str, tf.Variable]) -> tf.Tensor:
    """fc6 (7x7 VALID), fc7 and fc8 as matrix products over pool5's 7x7 patches, with slim's variables."""
    depth = pool5.shape[-1]
    patch = FC6_KERNEL * FC6_KERNEL * depth
    patches = tf.image.extract_patches(pool5, [1, FC6_KERNEL, FC6_KERNEL, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")
    net = tf.reshape(patches, [-1, patch])
    for layer, width, relu in (("fc6", FC_WIDTH, True), ("fc7", FC_WIDTH, True), ("fc8", NUM_CLASSES, False)):
        kernel = tf.reshape(variables[f"{SCOPE}/{layer}/weights"], [-1, width])
        net = tf.matmul(net, kernel) + variables[f"{SCOPE}/{layer}/biases"]
        net = tf.nn.relu(net) if relu else net
    return tf.reshape(net, tf.concat([tf.shape(patches)[:3], [NUM_CLASSES]], axis=0))

