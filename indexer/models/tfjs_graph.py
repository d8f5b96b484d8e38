"""A TensorFlow.js graph model (``model.json`` + weight files) read and run as a TensorFlow function.

A TF.js graph model is a TF ``GraphDef`` written as JSON (``modelTopology.node``) whose constants are kept
apart: ``weightsManifest`` lists them, in order, in binary files (``paths``, concatenated). Weights are
stored as their dtype (float32, int32, bool) or quantized (`QUANTIZED`: float16, or uint8/uint16 with
``value = q * scale + min``); the converter writes int64 constants as int32, and a node's ``dtype``
attribute says which to give back. `read` parses it all with numpy; `to_function` interprets the nodes as
TensorFlow ops (`OPS`) and knows only those: an unknown op is a `GraphModelError` naming it, raised
before anything runs. Nodes whose inputs are all constant are evaluated once at load (constant folding).

**Two rewrites**, because a graph is exported for the one input shape of its ``signature`` (e.g. 1 x 3 x
416 x 416) and some of its constants hold numbers of that shape:

1. *Batch.* A ``Reshape`` to a constant shape whose first entry is the exported batch keeps its input's
   batch instead: exporters write ``[1, C, -1]``, which would fold a batch of N photos into one row of
   N times the positions (``-1``) and mix their outputs.
2. *Size.* A ``ResizeBilinear`` to a constant size scales its input by the ratio of that size to the
   input's size in the exported shape (13 -> 26 becomes "twice"), so the graph runs at any input size that
   its strides divide, not only the exported one. The exported sizes are found by building the graph once
   on the signature's shape (static shapes only, nothing runs).

**Layouts.** Graphs converted from ONNX compute in NHWC but keep ONNX's NCHW between layers, with a
``Transpose`` before and after each convolution (83 in NanoDet). A value here is a tensor plus the
permutation that gives the graph's view of it (`Laid`): a ``Transpose`` only changes the permutation,
elementwise ops, ``Pad``, ``ConcatV2`` and ``SplitV`` work on the tensor as it lies (their axes mapped),
and only ops with a layout of their own (``Conv2D``, ``MaxPool``, ``ResizeBilinear``, ``Reshape``) and the
outputs move data. The results are the same; NanoDet costs TensorFlow a fifth less CPU (bench/RESULTS.md).

Only TensorFlow and numpy are used (the ``tensorflowjs`` package converts such graphs too, but pins its own
TensorFlow, JAX and TF-Hub releases for a job of a few hundred lines).
"""

from __future__ import annotations

import base64
import graphlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from indexer.errors import ImgidxError


class GraphModelError(ImgidxError):
    """A TF.js graph model cannot be read or run: a file missing, truncated or malformed, or an unknown op."""


#: Manifest dtypes as stored, and the quantized forms (``quantization.dtype``) with their byte sizes.
STORED_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}
#: Quantized forms stored as ``round((value - min) / scale)``: dequantized as ``q * scale + min``.
AFFINE_QUANTIZED = frozenset({"uint8", "uint16"})
#: A node's ``dtype`` attribute (TF's ``DataType`` names) as numpy dtypes: int64 comes stored as int32.
GRAPH_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_}


@dataclass(frozen=True)
class Node:
    """One ``GraphDef`` node: its ``inputs`` are ``name`` or ``name:k`` (control inputs ``^name`` dropped)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class GraphModel:
    """What `read` finds: the nodes in an order that runs (inputs first), the constants' values, the
    input placeholders' exported shapes and the output names of the ``signature``."""

    path: Path
    nodes: tuple[Node, ...]
    weights: Mapping[str, np.ndarray]
    inputs: Mapping[str, tuple[int, ...]]
    outputs: tuple[str, ...]
    output_shapes: Mapping[str, tuple[int, ...]]


def _attr_value(value: Mapping) -> Any:
    """A ``AttrValue`` in its JSON form as a Python value (ints, floats, bools, strings, lists, dtypes)."""
    if "list" in value:
        items = value["list"]
        for key, cast in (("i", int), ("f", float), ("b", bool), ("s", lambda s: base64.b64decode(s).decode())):
            if key in items:
                return [cast(v) for v in items[key]]
        return []
    for key, cast in (("i", int), ("f", float), ("b", bool), ("type", str)):
        if key in value:
            return cast(value[key])
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    return value


def _shape(tensor_shape: Mapping) -> tuple[int, ...]:
    return tuple(int(d.get("size", -1)) for d in tensor_shape.get("dim", []))


def _read_weights(folder: Path, manifest: Sequence[Mapping], dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The constants of every manifest group, from its files read end to end."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        files = [folder / name for name in group["paths"]]
        try:
            data = b"".join(path.read_bytes() for path in files)
        except OSError as exc:
            raise GraphModelError(f"cannot read the weights {exc.filename}: {exc.strerror}") from None
        offset = 0
        for entry in group["weights"]:
            shape = tuple(entry["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            quantization = entry.get("quantization")
            stored = quantization["dtype"] if quantization else entry["dtype"]
            if stored not in (QUANTIZED if quantization else STORED_DTYPES):
                raise GraphModelError(f"{files[0]}: weight {entry['name']} is stored as {stored}, which this reader "
                                      f"does not know")
            dtype = np.dtype((QUANTIZED if quantization else STORED_DTYPES)[stored])
            end = offset + count * dtype.itemsize
            if end > len(data):
                raise GraphModelError(f"{files[-1]}: truncated ({len(data)} bytes; weight {entry['name']} needs "
                                      f"bytes {offset}-{end})")
            value = np.frombuffer(data, dtype, count, offset).reshape(shape)
            if quantization and stored in AFFINE_QUANTIZED:
                value = value * np.float32(quantization["scale"]) + np.float32(quantization["min"])
            target = GRAPH_DTYPES.get(dtypes.get(entry["name"], ""), STORED_DTYPES.get(entry["dtype"]))
            weights[entry["name"]] = np.asarray(value).astype(target)
            offset = end
        if offset != len(data):
            raise GraphModelError(f"{files[-1]}: {len(data) - offset} bytes more than its manifest lists")
    return weights


def _in_order(nodes: Sequence[Node]) -> tuple[Node, ...]:
    """``nodes`` sorted so that each comes after its inputs (the JSON order need not be)."""
    by_name = {node.name: node for node in nodes}
    sorter = graphlib.TopologicalSorter({n.name: {source(i) for i in n.inputs} for n in nodes})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise GraphModelError(f"the graph has a cycle through {exc.args[1][0]}") from None
    missing = [name for name in order if name not in by_name]
    if missing:
        raise GraphModelError(f"the graph has no node {missing[0]!r}, which another node takes as input")
    return tuple(by_name[name] for name in order)


def source(name: str) -> str:
    """The node an input name ``node:k`` comes from."""
    return name.partition(":")[0]


def read(path: str | Path) -> GraphModel:
    """Parse the graph model ``path`` (its ``model.json``) and its weight files beside it."""
    path = Path(path)
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
        topology, manifest = model["modelTopology"], model["weightsManifest"]
        raw_nodes = topology["node"]
    except OSError as exc:
        raise GraphModelError(f"cannot read the graph model {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphModelError(f"{path} is not a TF.js graph model ({type(exc).__name__}: {exc})") from None
    nodes = tuple(
        Node(n["name"], n["op"], tuple(i for i in n.get("input", []) if not i.startswith("^")),
             {k: _attr_value(v) for k, v in n.get("attr", {}).items()})
        for n in raw_nodes
    )
    dtypes = {n.name: n.attr("dtype", "") for n in nodes if n.op == "Const"}
    weights = _read_weights(path.parent, manifest, dtypes)
    missing = [n.name for n in nodes if n.op == "Const" and n.name not in weights]
    if missing:
        raise GraphModelError(f"{path}: the constant {missing[0]} is in no weights file")
    signature = model.get("signature", {})
    inputs = {source(spec["name"]): _shape(spec.get("tensorShape", {})) for spec in signature.get("inputs", {}).values()}
    if not inputs:
        inputs = {n.name: _shape(n.attr("shape", {}).get("shape", {})) for n in nodes if n.op == "Placeholder"}
    outputs = {source(spec["name"]): _shape(spec.get("tensorShape", {})) for spec in signature.get("outputs", {}).values()}
    return GraphModel(path, _in_order(nodes), weights, inputs, tuple(sorted(outputs)), outputs)


# --- Running the graph ---------------------------------------------------------------------------------------


class Laid(NamedTuple):
    """A value of the graph as it lies in memory: the graph's view of it is ``tf.transpose(tensor, perm)``
    (``perm`` None: the tensor as it is)."""

    tensor: tf.Tensor
    perm: tuple[int, ...] | None = None

    def view(self) -> tf.Tensor:
        """The value as the graph sees it (moves the data if it lies otherwise)."""
        return self.tensor if self.perm is None else tf.transpose(self.tensor, self.perm)

    def axis(self, axis: int) -> int:
        """The axis of ``tensor`` that is the graph's ``axis``."""
        rank = len(self.perm) if self.perm is not None else self.tensor.shape.rank
        axis = int(axis) % rank
        return axis if self.perm is None else self.perm[axis]


def _compose(perm: tuple[int, ...] | None, then: Sequence[int]) -> tuple[int, ...] | None:
    """The permutation of ``transpose(transpose(t, perm), then)``; None when that is ``t`` itself."""
    composed = tuple(int(then[i]) if perm is None else perm[int(then[i])] for i in range(len(then)))
    return None if composed == tuple(range(len(composed))) else composed


def _tensor(value) -> tf.Tensor:
    """The graph's view of a `Laid` value, a constant as a tensor, a tensor as it is."""
    if isinstance(value, Laid):
        return value.view()
    return value if tf.is_tensor(value) else tf.constant(value)


def _same_layout(values: Sequence) -> tuple[int, ...] | None | bool:
    """The permutation all ``values`` (all `Laid`) share, or False when they do not share one."""
    perms = {v.perm if isinstance(v, Laid) else False for v in values}
    return perms.pop() if len(perms) == 1 else False


def _elementwise(function: Callable) -> Callable:
    """An op applied to each element: it runs on the tensor as it lies."""

    def run(node: Node, x, *rest):
        if isinstance(x, Laid):
            return Laid(function(node, x.tensor, *rest), x.perm)
        return Laid(function(node, _tensor(x), *rest))

    return run


def _binary(function: Callable) -> Callable:
    """A broadcasting op of two values: on the tensors as they lie when both lie alike (or one is a single
    number), else on the graph's views."""

    def run(node: Node, a, b):
        if isinstance(a, Laid) and isinstance(b, Laid) and a.perm == b.perm:
            return Laid(function(a.tensor, b.tensor), a.perm)
        for laid, other, swap in ((a, b, False), (b, a, True)):
            if isinstance(laid, Laid) and not isinstance(other, Laid) and np.size(other) == 1:
                scalar = tf.constant(np.reshape(other, ()), laid.tensor.dtype)
                return Laid(function(scalar, laid.tensor) if swap else function(laid.tensor, scalar), laid.perm)
        return Laid(function(_tensor(a), _tensor(b)))

    return run


def _transpose(node: Node, x, perm):
    return Laid(x.tensor, _compose(x.perm, np.asarray(perm))) if isinstance(x, Laid) else Laid(tf.transpose(x, perm))


def _pad(node: Node, x, paddings, constant=None):
    paddings = np.asarray(paddings)
    if isinstance(x, Laid) and x.perm is not None:
        laid_out = np.zeros_like(paddings)
        for axis, pad in enumerate(paddings):
            laid_out[x.perm[axis]] = pad
        paddings, tensor, perm = laid_out, x.tensor, x.perm
    else:
        tensor, perm = _tensor(x), None
    value = 0 if constant is None else tf.cast(_tensor(constant), tensor.dtype)
    return Laid(tf.pad(tensor, paddings, constant_values=value), perm)


def _concat(node: Node, *values_and_axis):
    *values, axis = values_and_axis
    perm = _same_layout(values)
    if perm is not False:
        return Laid(tf.concat([v.tensor for v in values], values[0].axis(int(axis))), perm)
    return Laid(tf.concat([_tensor(v) for v in values], int(axis)))


def _split(node: Node, x, sizes, axis):
    x = x if isinstance(x, Laid) else Laid(tf.constant(x))
    parts = tf.split(x.tensor, np.asarray(sizes), x.axis(int(axis)))
    return [Laid(part, x.perm) for part in parts]


def _conv2d(node: Node, x, kernel):
    return Laid(tf.raw_ops.Conv2D(
        input=_tensor(x), filter=_tensor(kernel), strides=node.attr("strides"), padding=node.attr("padding"),
        explicit_paddings=node.attr("explicit_paddings") or [], data_format=node.attr("data_format", "NHWC"),
        dilations=node.attr("dilations") or [1, 1, 1, 1],
    ))


def _max_pool(node: Node, x):
    return Laid(tf.raw_ops.MaxPool(
        input=_tensor(x), ksize=node.attr("ksize"), strides=node.attr("strides"), padding=node.attr("padding"),
        explicit_paddings=node.attr("explicit_paddings") or [], data_format=node.attr("data_format", "NHWC"),
    ))


def _sparse_to_dense(node: Node, indices, shape, values, default):
    return Laid(tf.raw_ops.SparseToDense(
        sparse_indices=_tensor(indices), output_shape=_tensor(shape), sparse_values=_tensor(values),
        default_value=_tensor(default), validate_indices=node.attr("validate_indices", True),
    ))


def _identity(node: Node, x):
    return x if isinstance(x, Laid) else Laid(tf.constant(x))


@dataclass
class _Rewrites:
    """What the rewrites need to know of the exported graph (module docstring)."""

    batch: int | None = None
    #: Per ResizeBilinear node, its input's (height, width) in the exported shape.
    resize_inputs: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Set while the exported sizes are being recorded: the graph is built as exported.
    recording: bool = False


def _reshape(rewrites: _Rewrites):
    def run(node: Node, x, shape):
        x = _tensor(x)
        if isinstance(shape, np.ndarray) and not rewrites.recording:
            shape = shape.astype(np.int64)
            if shape.size and rewrites.batch is not None and shape[0] == rewrites.batch:
                rest = tf.constant(shape[1:], tf.int64)
                return Laid(tf.reshape(x, tf.concat([tf.shape(x, out_type=tf.int64)[:1], rest], 0)))
        return Laid(tf.reshape(x, _tensor(shape)))

    return run


def _resize_bilinear(rewrites: _Rewrites):
    def run(node: Node, x, size):
        x = _tensor(x)
        if rewrites.recording:
            rewrites.resize_inputs[node.name] = tuple(int(d) for d in x.shape[1:3])
        elif isinstance(size, np.ndarray) and node.name in rewrites.resize_inputs:
            ratio = size.astype(np.float64) / np.array(rewrites.resize_inputs[node.name], np.float64)
            here = tf.cast(tf.shape(x)[1:3], tf.float64)
            size = tf.cast(tf.round(here * ratio), tf.int32)
        return Laid(tf.raw_ops.ResizeBilinear(
            images=x, size=_tensor(size), align_corners=node.attr("align_corners", False),
            half_pixel_centers=node.attr("half_pixel_centers", False),
        ))

    return run


#: The ops this reader runs, each as TF ops on `Laid` values (or numpy constants). ``Const`` and
#: ``Placeholder`` are the graph's weights and inputs.
OPS: dict[str, Callable] = {
    "Identity": _identity,
    "Transpose": _transpose,
    "Add": _binary(tf.add),
    "AddV2": _binary(tf.add),
    "Sub": _binary(tf.subtract),
    "Mul": _binary(tf.multiply),
    "Sigmoid": _elementwise(lambda node, x: tf.sigmoid(x)),
    "Relu": _elementwise(lambda node, x: tf.nn.relu(x)),
    "LeakyRelu": _elementwise(lambda node, x: tf.nn.leaky_relu(x, node.attr("alpha", 0.2))),
    "Pad": _pad,
    "PadV2": _pad,
    "ConcatV2": _concat,
    "SplitV": _split,
    "Conv2D": _conv2d,
    "MaxPool": _max_pool,
    "SparseToDense": _sparse_to_dense,
}
#: Ops whose behaviour depends on the rewrites (module docstring).
REWRITTEN_OPS = ("Reshape", "ResizeBilinear")
GRAPH_OPS = ("Const", "Placeholder")


def check_ops(graph: GraphModel) -> None:
    """Raise `GraphModelError` naming the first node whose op this reader does not run."""
    known = set(OPS) | set(REWRITTEN_OPS) | set(GRAPH_OPS)
    unknown = [n for n in graph.nodes if n.op not in known]
    if unknown:
        ops = sorted({n.op for n in unknown})
        raise GraphModelError(f"{graph.path}: op {ops[0]} (node {unknown[0].name}) is not one this reader runs"
                              + (f"; nor {', '.join(ops[1:])}" if len(ops) > 1 else ""))


def _output(value, index: int = 0):
    return value[index] if isinstance(value, list) else value


class GraphFunction:
    """The graph as a Python function of TF tensors (call it inside a ``tf.function``): feeds by input
    name, outputs by name. A feed may be a `Laid` value, e.g. an NHWC tensor standing for the NCHW input
    (``Laid(nhwc, (0, 3, 1, 2))``), which spares the graph's first transposes."""

    def __init__(self, graph: GraphModel, lazy_transposes: bool = True):
        check_ops(graph)
        self.graph = graph
        self.rewrites = _Rewrites()
        self.ops = {**OPS, "Reshape": _reshape(self.rewrites), "ResizeBilinear": _resize_bilinear(self.rewrites)}
        if not lazy_transposes:  # every Transpose moves the data, as the graph says (for comparison)
            self.ops["Transpose"] = lambda node, x, perm: Laid(tf.transpose(_tensor(x), perm))
        self.constants = self._folded()
        batches = {shape[0] for shape in graph.inputs.values() if shape}
        self.rewrites.batch = batches.pop() if len(batches) == 1 else None
        self._record_exported_sizes()

    def _folded(self) -> dict[str, Any]:
        """Every node computed from constants alone, evaluated once (eagerly) as numpy values."""
        values: dict[str, Any] = {}
        with tf.init_scope():
            for node in self.graph.nodes:
                self._fold(node, values)
        return values

    def _fold(self, node: Node, values: dict[str, Any]) -> None:
        """Add ``node``'s value to ``values`` if it is a constant or computed from constants alone."""
        if node.op == "Const":
            values[node.name] = self.graph.weights[node.name]
        elif node.op != "Placeholder" and node.inputs and all(source(i) in values for i in node.inputs):
            result = self._run_node(node, values)
            values[node.name] = [r.view().numpy() for r in result] if isinstance(result, list) else result.view().numpy()

    def _input(self, values: Mapping[str, Any], name: str):
        node, _, index = name.partition(":")
        return _output(values[node], int(index or 0))

    def _run_node(self, node: Node, values: Mapping[str, Any]):
        return self.ops[node.op](node, *(self._input(values, i) for i in node.inputs))

    def _record_exported_sizes(self) -> None:
        """The input sizes of the ResizeBilinear nodes at the exported shape (static shapes, in a graph that
        is built and dropped)."""
        if not any(n.op == "ResizeBilinear" for n in self.graph.nodes):
            return
        self.rewrites.recording = True
        try:
            with tf.Graph().as_default():
                feeds = {name: tf.zeros(shape, tf.float32) for name, shape in self.graph.inputs.items()}
                self(feeds, self.graph.outputs)
        finally:
            self.rewrites.recording = False

    def __call__(self, feeds: Mapping[str, "tf.Tensor | Laid"], outputs: Sequence[str] | None = None
                 ) -> list[tf.Tensor]:
        """The graph's ``outputs`` (default: the signature's) for ``feeds`` (input name -> value)."""
        values: dict[str, Any] = dict(self.constants)
        for name, feed in feeds.items():
            values[name] = feed if isinstance(feed, Laid) else Laid(feed)
        missing = [n.name for n in self.graph.nodes if n.op == "Placeholder" and n.name not in values]
        if missing:
            raise GraphModelError(f"{self.graph.path}: no value fed for the input {missing[0]}")
        for node in self.graph.nodes:
            if node.name not in values:
                values[node.name] = self._run_node(node, values)
        return [_tensor(self._input(values, name)) for name in (outputs or self.graph.outputs)]


def to_function(graph: GraphModel, lazy_transposes: bool = True) -> GraphFunction:
    """The graph ready to run (`GraphFunction`), its ops checked first; ``lazy_transposes=False`` runs each
    ``Transpose`` as it stands (the module docstring's "Layouts"), to compare."""
    return GraphFunction(graph, lazy_transposes)
