"""The TF.js graph-model reader on a small graph written here: weights as stored and quantized, the ops run as
the plain TF ops would, the batch and size rewrites, and clear errors for what it cannot read."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from indexer.models import tfjs_graph
from indexer.models.tfjs_graph import GraphModelError, Laid

#: The exported input: one NCHW photo of 2 channels, 4x4.
EXPORTED = (1, 2, 4, 4)
CHANNELS_OUT = 3
PADDING = 1
#: The ResizeBilinear's constant size, at the exported shape: twice its 6x6 input.
RESIZED = 12
LEAKY_ALPHA = 0.1
NHWC_FROM_NCHW, NCHW_FROM_NHWC = [0, 2, 3, 1], [0, 3, 1, 2]
#: The bias, stored as uint8 with an affine scale.
BIAS_SCALE, BIAS_MIN = 0.02, -1.0
BIAS_CODES = np.array([0, 100, 255], np.uint8)

RNG = np.random.default_rng(20)
KERNEL = RNG.normal(size=(1, 1, EXPORTED[1], CHANNELS_OUT)).astype(np.float16)


def _attr(value) -> dict:
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, float):
        return {"f": value}
    if isinstance(value, str):
        return {"s": base64.b64encode(value.encode()).decode()}
    if isinstance(value, list):
        return {"list": {"i": [str(v) for v in value]}}
    return value


def _node(name: str, op: str, inputs=(), **attrs) -> dict:
    node = {"name": name, "op": op, "attr": {k: _attr(v) for k, v in attrs.items()}}
    if inputs:
        node["input"] = list(inputs)
    return node


def write_graph(folder: Path, extra_nodes=(), truncate: int = 0, bias_dtype: str = "uint8") -> Path:
    """A TF.js graph model: NCHW in, a 1x1 convolution in NHWC between transposes (float16 kernel, uint8 or
    uint16 bias), LeakyRelu and Pad in NCHW, a 2x ResizeBilinear, a Reshape to ``[1, C, -1]`` (int64, stored as
    int32), a sigmoid out."""
    consts = {  # name -> (stored values, manifest entry extras, graph dtype)
        "nhwc": (np.array(NHWC_FROM_NCHW, np.int32), {}, "DT_INT32"),
        "nchw": (np.array(NCHW_FROM_NHWC, np.int32), {}, "DT_INT32"),
        "kernel": (KERNEL, {"quantization": {"dtype": "float16", "original_dtype": "float32"}}, "DT_FLOAT"),
        "bias": (BIAS_CODES.astype(bias_dtype), {"quantization": {"dtype": bias_dtype, "scale": BIAS_SCALE,
                                                                  "min": BIAS_MIN, "original_dtype": "float32"}},
                 "DT_FLOAT"),
        "paddings": (np.array([[0, 0], [0, 0], [PADDING] * 2, [PADDING] * 2], np.int32), {}, "DT_INT32"),
        "size": (np.array([RESIZED, RESIZED], np.int32), {}, "DT_INT32"),
        "target": (np.array([1, CHANNELS_OUT, -1], np.int32), {}, "DT_INT64"),
    }
    nodes = [_node(name, "Const", dtype={"type": dtype}) for name, (_, _, dtype) in consts.items()]
    nodes += [
        _node("x", "Placeholder", dtype={"type": "DT_FLOAT"}),
        _node("t1", "Transpose", ["x", "nhwc"]),
        _node("conv", "Conv2D", ["t1", "kernel"], strides=[1, 1, 1, 1], padding="VALID", data_format="NHWC",
              dilations=[1, 1, 1, 1], explicit_paddings=[]),
        _node("add", "Add", ["conv", "bias"]),
        _node("t2", "Transpose", ["add", "nchw"]),
        _node("act", "LeakyRelu", ["t2"], alpha=LEAKY_ALPHA),
        _node("pad", "Pad", ["act", "paddings"]),
        _node("t3", "Transpose", ["pad", "nhwc"]),
        _node("up", "ResizeBilinear", ["t3", "size"], align_corners=False, half_pixel_centers=True),
        _node("t4", "Transpose", ["up", "nchw"]),
        _node("flat", "Reshape", ["t4", "target"], Tshape={"type": "DT_INT64"}),
        _node("out", "Sigmoid", ["flat"]),
        _node("Identity", "Identity", ["out"]),
        *extra_nodes,
    ]
    # The JSON order need not run in order: the reader sorts the nodes.
    nodes = nodes[::-1]
    data = b"".join(np.ascontiguousarray(values).tobytes() for values, _, _ in consts.values())
    manifest = [{"paths": ["group1-shard1of1.bin"], "weights": [
        {"name": name, "shape": list(values.shape), "dtype": "int32" if values.dtype == np.int32 else "float32",
         **extra}
        for name, (values, extra, _) in consts.items()
    ]}]
    outputs = {"Identity:0": {"name": "Identity:0", "dtype": "DT_FLOAT",
                              "tensorShape": {"dim": [{"size": "1"}, {"size": str(CHANNELS_OUT)}, {"size": "144"}]}}}
    signature = {"inputs": {"x:0": {"name": "x:0", "dtype": "DT_FLOAT",
                                    "tensorShape": {"dim": [{"size": str(d)} for d in EXPORTED]}}},
                 "outputs": outputs}
    model = {"format": "graph-model", "modelTopology": {"node": nodes}, "weightsManifest": manifest,
             "signature": signature}
    (folder / "group1-shard1of1.bin").write_bytes(data[: len(data) - truncate])
    path = folder / "model.json"
    path.write_text(json.dumps(model))
    return path


def expected(photos: np.ndarray) -> np.ndarray:
    """The graph's arithmetic with plain TF ops, on NCHW photos of any size."""
    bias = BIAS_CODES.astype(np.float32) * np.float32(BIAS_SCALE) + np.float32(BIAS_MIN)
    x = tf.transpose(tf.constant(photos, tf.float32), NHWC_FROM_NCHW)
    x = tf.nn.conv2d(x, KERNEL.astype(np.float32), 1, "VALID") + bias
    x = tf.nn.leaky_relu(x, LEAKY_ALPHA)
    x = tf.pad(x, [[0, 0], [PADDING] * 2, [PADDING] * 2, [0, 0]])
    x = tf.raw_ops.ResizeBilinear(images=x, size=[2 * int(x.shape[1]), 2 * int(x.shape[2])], half_pixel_centers=True)
    x = tf.transpose(x, NCHW_FROM_NHWC)
    return tf.sigmoid(tf.reshape(x, [x.shape[0], CHANNELS_OUT, -1])).numpy()


@pytest.fixture
def graph_file(tmp_path):
    return write_graph(tmp_path)


def run(path: Path, photos: np.ndarray) -> np.ndarray:
    function = tfjs_graph.to_function(tfjs_graph.read(path))
    return function({"x": tf.constant(photos, tf.float32)})[0].numpy()


@pytest.mark.parametrize("bias_dtype", ["uint8", "uint16"])
def test_weights_come_back_dequantized_and_in_their_graph_dtype(tmp_path, bias_dtype):
    graph = tfjs_graph.read(write_graph(tmp_path, bias_dtype=bias_dtype))
    assert graph.weights["kernel"].dtype == np.float32
    assert np.array_equal(graph.weights["kernel"], KERNEL.astype(np.float32))
    assert np.allclose(graph.weights["bias"], [BIAS_MIN, BIAS_MIN + 100 * BIAS_SCALE, BIAS_MIN + 255 * BIAS_SCALE])
    assert graph.weights["target"].dtype == np.int64  # stored int32, int64 in the graph
    assert graph.weights["target"].tolist() == [1, CHANNELS_OUT, -1]  # the weights after the bias line up
    assert graph.weights["size"].tolist() == [RESIZED, RESIZED]
    assert graph.inputs == {"x": EXPORTED}
    assert graph.outputs == ("Identity",)


def test_the_graph_runs_as_its_plain_ops(graph_file):
    photo = RNG.normal(size=EXPORTED).astype(np.float32)
    assert np.allclose(run(graph_file, photo), expected(photo), atol=1e-6)


def test_a_batch_keeps_its_photos_apart(graph_file):
    """The Reshape's constant ``[1, C, -1]`` keeps the batch: each photo's output is its own."""
    photos = RNG.normal(size=(3, *EXPORTED[1:])).astype(np.float32)
    got = run(graph_file, photos)
    assert got.shape == (3, CHANNELS_OUT, RESIZED * RESIZED)
    for i in range(3):
        assert np.allclose(got[i], expected(photos[i : i + 1])[0], atol=1e-6)


def test_other_sizes_resize_by_the_exported_ratio(graph_file):
    photos = RNG.normal(size=(2, EXPORTED[1], 8, 6)).astype(np.float32)
    got = run(graph_file, photos)
    assert got.shape == (2, CHANNELS_OUT, (2 * (8 + 2)) * (2 * (6 + 2)))
    assert np.allclose(got, expected(photos), atol=1e-6)


def test_a_traced_function_and_an_input_laid_out_otherwise_give_the_same(graph_file):
    function = tfjs_graph.to_function(tfjs_graph.read(graph_file))
    photos = RNG.normal(size=(2, EXPORTED[1], 8, 8)).astype(np.float32)
    traced = tf.function(lambda nhwc: function({"x": Laid(nhwc, tuple(NCHW_FROM_NHWC))})[0], autograph=False)
    got = traced(tf.constant(photos.transpose(0, 2, 3, 1))).numpy()
    assert np.allclose(got, expected(photos), atol=1e-6)


def test_transposes_run_as_they_stand_give_the_same(graph_file):
    graph = tfjs_graph.read(graph_file)
    photos = RNG.normal(size=(2, EXPORTED[1], 8, 8)).astype(np.float32)
    moved = tfjs_graph.to_function(graph, lazy_transposes=False)({"x": tf.constant(photos)})[0].numpy()
    assert np.allclose(moved, expected(photos), atol=1e-6)


def test_an_op_it_does_not_know_is_named_before_anything_runs(tmp_path):
    path = write_graph(tmp_path, extra_nodes=[_node("strange", "Erf", ["out"])])
    graph = tfjs_graph.read(path)
    with pytest.raises(GraphModelError, match=r"op Erf \(node strange\) is not one this reader runs"):
        tfjs_graph.to_function(graph)


def test_truncated_weights_are_refused_naming_the_file(tmp_path):
    with pytest.raises(GraphModelError, match=r"group1-shard1of1\.bin: truncated"):
        tfjs_graph.read(write_graph(tmp_path, truncate=4))


def test_a_file_that_is_no_graph_model_is_refused(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"format": "layers-model"}')
    with pytest.raises(GraphModelError, match="is not a TF.js graph model"):
        tfjs_graph.read(path)
    with pytest.raises(GraphModelError, match="cannot read the graph model"):
        tfjs_graph.read(tmp_path / "missing.json")
