"""VGG-16 backbone on random weights in the real layouts: shapes, geometry, precisions, weight formats."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import vgg_fixture  # noqa: E402

tf = pytest.importorskip("tensorflow")

from indexer.geometry import derive_geometry  # noqa: E402
from indexer.models import load_model  # noqa: E402
from indexer.models import vgg16  # noqa: E402
from indexer.models.base import resolve_precision  # noqa: E402
from indexer.models.weights import VGG16_LAYERS, VGG16_SHAPES, read_vgg16_weights  # noqa: E402

WORKING = (448, 448)
# Relative L2 distance between bf16 and fp32 maps, and the share of positions with the same top class.
BF16_MAX_RELATIVE_ERROR = 0.03
BF16_MIN_ARGMAX_AGREEMENT = 0.9




@pytest.fixture(scope="module")
def fp32_model(vgg_files):
    """Built from the checkpoint as the loader reads it; left unfinalized so tests can add gradients."""
    tensors, _ = read_vgg16_weights(vgg_files.checkpoint)
    model = vgg16.VGG16(tensors, "fp32", finalize=False)
    yield model
    model.close()


@pytest.fixture(scope="module")
def default_model(vgg_files):
    model = load_model("vgg16", weights=str(vgg_files.checkpoint), precision="auto")
    yield model
    model.close()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (2, *WORKING, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def fp32_maps(fp32_model, images):
    return fp32_model.class_map(images)


def test_network_variables_are_the_checkpoint_tensors(fp32_model):
    with fp32_model._graph.as_default():
        variables = {v.op.name: tuple(v.shape.as_list()) for v in tf.compat.v1.global_variables()}
    assert variables == VGG16_SHAPES


def test_layers_give_the_seed_geometry():
    geometry = derive_geometry(vgg16.LAYERS, WORKING)
    assert geometry.map_shape == (8, 8)
    assert (geometry.stride, geometry.rows.offset, geometry.receptive_field) == (32, 111.5, 404)
    assert vgg16.MIN_INPUT == 224
    kinds = [(layer.kernel, layer.stride, layer.padding) for layer in vgg16.LAYERS]
    assert kinds.count((3, 1, "SAME")) == 13 and kinds.count((2, 2, "VALID")) == 5
    assert kinds[-3:] == [(7, 1, "VALID"), (1, 1, "SAME"), (1, 1, "SAME")]


@pytest.mark.parametrize(
    "hw, expected",
    [((224, 224), (1, 1)), ((448, 448), (8, 8)), ((480, 640), (9, 14)), ((300, 451), (3, 8)), ((255, 256), (1, 2))],
)
def test_class_map_shape_matches_geometry(default_model, hw, expected):
    batch = np.random.default_rng(2).integers(0, 256, (3, *hw, 3), dtype=np.uint8)
    out = default_model.class_map(batch)
    assert out.shape == (3, *expected, 1000) and out.dtype == np.float32
    assert default_model.geometry(hw).map_shape == expected
    assert np.isfinite(out).all()


def test_default_path_is_bf16_on_one_finalized_graph(default_model, images):
    assert default_model.precision == resolve_precision("auto")
    with default_model._graph.as_default():
        dtypes = {v.dtype.base_dtype for v in tf.compat.v1.global_variables()}
    assert dtypes == {vgg16.DTYPES[default_model.precision]}
    assert default_model._graph.finalized
    first = default_model.class_map(images)
    assert default_model.class_map(images[:1]).shape == (1, 8, 8, 1000)
    np.testing.assert_array_equal(default_model.class_map(images), first)
    assert default_model.class_map(images[:0]).shape == (0, 8, 8, 1000)


def test_bf16_agrees_with_fp32(default_model, fp32_model, fp32_maps, images):
    assert fp32_model.precision == "fp32"
    exact = fp32_maps
    fast = default_model.class_map(images)
    assert np.linalg.norm(fast - exact) / np.linalg.norm(exact) < BF16_MAX_RELATIVE_ERROR
    assert (fast.argmax(-1) == exact.argmax(-1)).mean() >= BF16_MIN_ARGMAX_AGREEMENT


def test_matmul_head_equals_slim_fc_convolutions(fp32_model, images):
    ours, slims = fp32_model._session.run(
        [fp32_model._logits, fp32_model._slim_logits], {fp32_model._images: images[:1]}
    )
    np.testing.assert_allclose(ours, slims, rtol=1e-4, atol=1e-3 * np.abs(slims).max())


def test_receptive_field_from_input_gradients(fp32_model, images):
    """The pixels one map position depends on are exactly the box geometry() gives it (clipped)."""
    inner, corner = (3, 4), (0, 0)
    with fp32_model._graph.as_default():
        logits = fp32_model._logits
        target = tf.reduce_sum(logits[0, inner[0], inner[1]]) + tf.reduce_sum(logits[1, corner[0], corner[1]])
        (gradient,) = tf.gradients(target, fp32_model._centered)
    grads = fp32_model._session.run(gradient, {fp32_model._images: images})
    geometry = fp32_model.geometry(WORKING)
    for image, (row, col) in enumerate((inner, corner)):
        touched = np.abs(grads[image]).sum(axis=-1) > 0
        rows, cols = np.flatnonzero(touched.any(axis=1)), np.flatnonzero(touched.any(axis=0))
        top, left, bottom, right = geometry.position_box(row, col)
        # Pixel i covers [i - 0.5, i + 0.5]; the box's first and last whole pixels, clipped to the image.
        assert rows[0] == max(top + 0.5, 0) and rows[-1] == min(bottom - 0.5, WORKING[0] - 1)
        assert cols[0] == max(left + 0.5, 0) and cols[-1] == min(right - 0.5, WORKING[1] - 1)
    rows = np.flatnonzero((np.abs(grads[0]).sum(axis=-1) > 0).any(axis=1))
    assert rows.size == geometry.receptive_field == 404
    assert (rows[0] + rows[-1]) / 2 == geometry.rows.centers()[inner[0]]


def test_keras_h5_gives_the_checkpoint_class_map(vgg_files, fp32_maps, images):
    model = vgg16.load(weights=str(vgg_files.h5), precision="fp32")
    try:
        assert model.precision == "fp32"
        np.testing.assert_allclose(model.class_map(images), fp32_maps, rtol=1e-5, atol=1e-3)
    finally:
        model.close()


def test_flops_count_the_graph(default_model):
    """The profiler's count over the graph equals 2 * multiply-adds of the 13 convolutions and 3 fc layers."""
    convs = 0
    for shape, keras in VGG16_LAYERS.values():
        if keras.startswith("block"):
            side = WORKING[0] // 2 ** (int(keras[len("block")]) - 1)
            convs += 2 * int(np.prod(shape)) * side * side
    fc = 2 * 8 * 8 * (7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * 1000)
    assert convs + fc <= default_model.flops(WORKING) <= (convs + fc) * 1.01


def test_rejects_inputs_it_cannot_map(default_model):
    with pytest.raises(ValueError, match="at least 224"):
        default_model.class_map(np.zeros((1, 223, 448, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        default_model.class_map(np.zeros((1, 448, 448, 3), np.float32))


@pytest.mark.parametrize("cell", [0, 4, 8])
def test_an_object_pasted_into_a_cell_changes_the_map_there_most(default_model, cell):
    """Random weights know no classes, so the "object" is a textured patch and what is found is the change
    it makes to the class map: it must peak at positions the geometry puts in the patch's cell."""
    size = 672
    third = size // 3
    rng = np.random.default_rng(cell)
    canvas = np.full((1, size, size, 3), 128, np.uint8)
    row, col = divmod(cell, 3)
    patched = canvas.copy()
    margin = third // 6
    patched[0, row * third + margin : (row + 1) * third - margin, col * third + margin : (col + 1) * third - margin] = (
        rng.integers(0, 256, (third - 2 * margin, third - 2 * margin, 3), dtype=np.uint8)
    )
    change = np.linalg.norm(default_model.class_map(patched) - default_model.class_map(canvas), axis=-1)[0]
    weights = default_model.geometry((size, size)).cell_weights()
    strongest = np.unravel_index(np.argmax(change), change.shape)
    assert weights[strongest].argmax() == cell
    in_cell = weights.argmax(axis=-1) == cell
    assert change[in_cell].mean() > 1.5 * change[~in_cell].mean()
