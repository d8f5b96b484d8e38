"""EfficientNet-Lite0 in TF against an independent PyTorch run of the same weights, and its geometry."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from indexer.errors import WeightsError
from indexer.geometry import Layer
from indexer.models import efficientnet_lite0 as lite0
from indexer.models import load_model
from indexer.models.base import resolve_precision

FIXTURES = Path(__file__).parent / "fixtures"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (967, 968)  # espresso, cup
#: Largest allowed |TF - PyTorch| logit difference, as a share of the reference's logit range.
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}


def _load_fixture_script():
    name = "make_lite0_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fixture_script = _load_fixture_script()


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURES / "lite0_reference.npz")


@pytest.fixture(scope="module")
def inputs():
    return fixture_script.prepare_inputs()


@pytest.fixture(scope="module")
def models():
    return {precision: load_model("efficientnet-lite0", precision=precision) for precision in ("fp32", "bf16")}


@pytest.fixture(scope="module")
def fp32(models):
    return models["fp32"]


def _logits(model, image: np.ndarray) -> np.ndarray:
    return model.class_map(image[None]).mean(axis=(1, 2))[0]


def test_inputs_are_the_ones_the_reference_saw(reference, inputs):
    for name, image in inputs.items():
        assert fixture_script.sha256(image) == str(reference[f"sha256/{name}"]), f"{name} is not the fixture's"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["chelsea_224", "coffee_224", "chelsea_257x333"])
def test_logits_match_the_pytorch_reference(models, reference, inputs, precision, name):
    expected = reference[f"logits/{name}"]
    got = _logits(models[precision], inputs[name])
    assert got.dtype == np.float32 and got.shape == (1000,)
    relative = np.abs(got - expected).max() / (expected.max() - expected.min())
    assert relative < TOLERANCE[precision], f"max |diff| is {relative:.2e} of the logit range"
    assert got.argmax() == expected.argmax()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_photos_get_their_classes(models, inputs, precision):
    assert _logits(models[precision], inputs["chelsea_224"]).argmax() in CAT_CLASSES
    assert _logits(models[precision], inputs["coffee_224"]).argmax() in COFFEE_CLASSES


@pytest.mark.parametrize("input_hw", [(224, 224), (225, 300), (97, 131), (448, 448), (33, 40), (1, 1)])
def test_class_map_shape_matches_geometry(fp32, input_hw):
    images = np.random.default_rng(0).integers(0, 256, (2, *input_hw, 3), dtype=np.uint8)
    class_map = fp32.class_map(images)
    assert class_map.dtype == np.float32
    assert class_map.shape == (2, *fp32.geometry(input_hw).map_shape, 1000)
    assert np.isfinite(class_map).all()
    assert fp32._run.experimental_get_tracing_count() == 1, "the graph must be built once, not per input size"


def test_batching_does_not_change_results(fp32, inputs):
    pair = np.stack([inputs["chelsea_224"], inputs["coffee_224"]])
    together = fp32.class_map(pair)
    alone = fp32.class_map(pair[1:])
    np.testing.assert_allclose(together[1:], alone, atol=1e-4)


def test_layers_come_from_the_block_table(fp32):
    spatial = [layer.kernel for layer in fp32.layers if layer.kernel > 1]
    unrolled = [s.kernel for s in lite0.STAGES for _ in range(s.repeats)]
    assert spatial == [lite0.STEM_KERNEL, *unrolled]
    assert np.prod([layer.stride for layer in fp32.layers]) == 32
    assert all(layer.padding == "SAME" for layer in fp32.layers)
    assert fp32.layers[-1] == Layer(1, 1, "SAME")  # the classifier, as a 1x1 convolution


def test_geometry_matches_the_networks_gradients(fp32):
    """The input pixels a map position depends on end exactly where geometry() says its field ends.

    The field (851 px) is wider than the input, so only its inner edges show: the bottom/right edge of
    position (0, 0), the top/left edge of the last position. Rows and columns have different offsets
    here (513 vs 544 px pad differently), so both of TF's SAME padding cases are checked.
    """
    input_hw = (513, 544)
    geometry = fp32.geometry(input_hw)
    assert geometry.rows.offset != geometry.cols.offset
    last_row, last_col = geometry.map_shape[0] - 1, geometry.map_shape[1] - 1
    x = tf.Variable(np.random.default_rng(1).normal(0.0, 0.5, (1, *input_hw, 3)).astype(np.float32))
    positions = [(0, 0), (0, 1), (last_row, last_col)]
    with tf.GradientTape(persistent=True) as tape:
        _, end_points = lite0.efficientnet_lite0(x, fp32.params)
        outputs = [tf.reduce_sum(end_points["class_map"][0, r, c]) for r, c in positions]
    for (row, col), output in zip(positions, outputs):
        support = np.abs(tape.gradient(output, x).numpy()[0]).sum(axis=-1) > 0
        rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
        top, left, bottom, right = geometry.position_box(row, col)  # pixel-edge coordinates
        half = geometry.receptive_field / 2
        if (row, col) == (last_row, last_col):
            centre = (rows.min() - 0.5 + half, cols.min() - 0.5 + half)
            assert (rows.max(), cols.max()) == (input_hw[0] - 1, input_hw[1] - 1)
        else:
            centre = (rows.max() + 0.5 - half, cols.max() + 0.5 - half)
            assert (rows.min(), cols.min()) == (0, 0)
        assert centre == (geometry.rows.centers()[row], geometry.cols.centers()[col])
        assert centre == ((top + bottom) / 2, (left + right) / 2)


def test_a_photo_in_a_corner_is_seen_in_that_corner(fp32, inputs):
    size, third = 672, 224
    canvases = np.full((2, size, size, 3), 127, dtype=np.uint8)
    canvases[0, :third, :third] = inputs["chelsea_224"]
    canvases[1, -third:, -third:] = inputs["chelsea_224"]
    class_maps = fp32.class_map(canvases)
    geometry = fp32.geometry((size, size))
    rows, cols = geometry.rows.centers(), geometry.cols.centers()
    is_cat = np.isin(class_maps.argmax(axis=-1), CAT_CLASSES)
    probabilities = tf.nn.softmax(class_maps).numpy()
    cat_by_cell = np.einsum("nhw,hwk->nk", probabilities[..., CAT_CLASSES].sum(-1), geometry.cell_weights())
    first, last = (lambda c: c < third), (lambda c: c >= size - third)
    for index, (near, opposite, cell) in enumerate([(first, last, 0), (last, first, 8)]):
        inside = near(rows)[:, None] & near(cols)[None, :]
        far = opposite(rows)[:, None] | opposite(cols)[None, :]
        assert is_cat[index][inside].mean() > 0.8
        assert not is_cat[index][far].any()
        assert cat_by_cell[index].argmax() == cell
        assert cat_by_cell[index][cell] > 0.5 > 5 * np.delete(cat_by_cell[index], cell).max()


def test_precision_auto_and_invalid(monkeypatch):
    with pytest.raises(ValueError, match="precision"):
        lite0.load(precision="fp16")
    chosen = {}
    monkeypatch.setattr(lite0, "EfficientNetLite0", lambda params, precision: chosen.setdefault("p", precision))
    lite0.load(precision="auto")
    assert chosen["p"] == resolve_precision("auto")


def test_wrong_or_broken_weights_are_weights_errors(tmp_path, fp32):
    state = {"_conv_stem.weight": np.zeros((32, 3, 3, 3), np.float32)}
    with pytest.raises(WeightsError, match="missing"):
        lite0.check_state_dict(state, "x.pth")
    truncated = tmp_path / "lite0.pth"
    with open(lite0.default_weights_path(), "rb") as source:
        truncated.write_bytes(source.read(1_000_000))
    with pytest.raises(WeightsError, match="truncated"):
        lite0.load(weights=str(truncated), precision="fp32")


def test_class_map_rejects_non_uint8_images(fp32):
    with pytest.raises(ValueError, match="uint8"):
        fp32.class_map(np.zeros((1, 32, 32, 3), dtype=np.float32))


def test_flops_scale_with_the_input_area(fp32):
    """Lite0 costs about 0.4 G multiply-adds at 224 px; the class map grows with the area it covers."""
    at_224, at_448 = fp32.flops((224, 224)), fp32.flops((448, 448))
    assert 0.7e9 < at_224 < 1.0e9
    assert at_448 / at_224 == pytest.approx(4.0, rel=0.02)
