"""The OpenVINO runtime on the real networks: the converted graph answers as TensorFlow's, int8 is built once
from photos, cached and checked, and the CLI indexes with it. Skipped where OpenVINO or NNCF is missing."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indexer import images, runtime
from indexer.cli import cli
from indexer.errors import QuantizedModelError
from indexer.labels import NUM_CLASSES
from indexer.models import load_model
from indexer.runtime import agreement, cache, photos, recipes

pytest.importorskip("openvino", reason="OpenVINO is not installed")
pytest.importorskip("nncf", reason="NNCF is not installed")
from indexer.runtime import openvino_model  # noqa: E402

PHOTOS = Path(__file__).parent / "photos"
LITE0 = "efficientnet-lite0"
#: Small working sizes keep the int8 builds to seconds; the network is the same at any size.
SMALL = 128
VGG_SIZE = 448  # the default working size, where int8's agreement with fp32 is checked
#: VGG-16's smallest working size, to calibrate its int8 model at: the same conversion and quantization as at
#: 448 in 40% of the time (the build took 59 s against 146 s, back to back on the 2-core machine; issue 24);
#: no other test builds the 448 one for this test to reuse.
VGG_CALIBRATION_SIZE = 224
#: fp32 on two runtimes differs only by the order of float sums.
FP32_TOLERANCE = 1e-3
DOMESTIC_CATS = range(281, 286)


@pytest.fixture(scope="module")
def lite0_tf():
    return load_model(LITE0, precision="fp32")


@pytest.fixture(scope="module")
def sample_photos():
    return {path.name: images.load(path).pixels for path in sorted(PHOTOS.glob("*.jpg"))}


def imgidx(*argv):
    return CliRunner().invoke(cli, [str(a) for a in argv], prog_name="imgidx")


def relative_error(expected: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(expected - got).max() / (expected.max() - expected.min()))


def test_lite0_converted_answers_as_tensorflow_at_every_shape(lite0_tf, sample_photos):
    converted = runtime.load_backbone(LITE0, None, "openvino", "fp32", size=SMALL)
    assert (converted.name, converted.precision, converted.runtime) == (LITE0, "fp32", "openvino")
    assert converted.layers == tuple(lite0_tf.layers)
    chelsea = sample_photos["chelsea.jpg"]
    for shape in ((128, 192), (96, 96), (224, 160)):
        batch = np.stack([images.resize(chelsea, shape), images.resize(chelsea[:, ::-1], shape)])
        expected, got = lite0_tf.class_map(batch), converted.class_map(batch)
        assert got.shape == expected.shape == (2, *lite0_tf.geometry(shape).map_shape, 1000)
        assert relative_error(expected, got) < FP32_TOLERANCE
    assert converted.class_map(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 3, 3, 1000)
    with pytest.raises(ValueError, match="expected uint8 images"):
        converted.class_map(np.zeros((1, 96, 96, 3), np.float32))


def test_lite0_int8_is_built_once_agrees_with_fp32_and_a_damaged_cache_is_not_rebuilt(
    lite0_tf, sample_photos, monkeypatch
):
    notes = []
    int8 = runtime.load_backbone(LITE0, None, "openvino", "int8", size=SMALL, on_build=notes.append)
    shipped = photos.shipped().id
    assert (int8.precision, int8.quantization) == ("int8", f"{shipped}-{recipes.recipe_of(LITE0).tag}")
    assert any(note.startswith(f"quantizing {LITE0} to int8 for size {SMALL} on 30 calibration photos") for note in notes)
    found = agreement.compare(lite0_tf, int8, sample_photos, SMALL)
    assert found.same_top > 0.5 and found.top5_overlap >= 0.6, found
    crop = agreement.seed_crop(sample_photos["chelsea.jpg"])[None]
    assert int8.class_map(crop)[0].mean((0, 1)).argmax() in DOMESTIC_CATS

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(openvino_model, "quantize", no_rebuild)
    monkeypatch.setattr(openvino_model, "convert", no_rebuild)
    again = runtime.load_backbone(LITE0, None, "openvino", "int8", size=SMALL, on_build=no_rebuild)
    batch = images.resize(sample_photos["coffee.jpg"], (128, 192))[None]
    assert np.array_equal(again.class_map(batch), int8.class_map(batch))
    folder = openvino_model.cached_int8(
        LITE0, cache.weights_digest(openvino_model.weights_file(LITE0, None)), SMALL, shipped
    )
    assert json.loads((folder / openvino_model.BUILT_FILE).read_text())["calibration"] == shipped
    (folder / openvino_model.MODEL_XML).write_text("<net>truncated")
    with pytest.raises(QuantizedModelError, match=rf"cannot read the cached OpenVINO model {re.escape(str(folder))} "
                                                  r"\(.*\); delete that folder to build it again"):
        runtime.load_backbone(LITE0, None, "openvino", "int8", size=SMALL)
    shutil.rmtree(folder)


def test_a_recipe_names_the_first_layer_and_the_head_it_leaves_in_float_and_new_settings_keep_old_tags():
    recipe = recipes.Recipe
    assert recipe(float_last_layers=0).tag == recipe().tag != recipe(float_last_layers=2).tag
    assert recipe(preset="mixed").tag != recipe().tag
    digest = cache.weights_digest(openvino_model.weights_file(LITE0, None))
    model = openvino_model.fp32_model(LITE0, None, digest, lambda note: None)
    names = recipe(float_first_layer=True, float_last_layers=2).nncf_arguments(model)["ignored_scope"].names
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    first, head, classifier = (ops[name].input(1).get_partial_shape().to_shape() for name in names)
    assert first[1] == 3  # on the pixels
    assert classifier[0] == NUM_CLASSES and head[0] == classifier[1]  # the head feeds the class map
    assert recipe().nncf_arguments(model)["ignored_scope"] is None


def test_a_user_calibration_missing_from_the_cache_is_an_error_not_a_silent_rebuild():
    today = recipes.recipe_of(LITE0).tag
    with pytest.raises(QuantizedModelError, match=rf"the int8 model of {LITE0} for size {SMALL} calibrated on "
                                                  r"photos-000000000000 is not in the cache .*imgidx runtime calibrate"):
        runtime.load_backbone(LITE0, None, "openvino", "int8", size=SMALL,
                              quantization=f"photos-000000000000-{today}")


def test_an_index_quantized_with_another_recipe_is_refused_not_mixed():
    """An index records its int8 model's recipe; a later imgidx whose recipe changed asks for --reindex."""
    shipped = photos.shipped().id
    assert recipes.split_quantization(recipes.quantization_id(LITE0, shipped)) == (shipped, recipes.recipe_of(LITE0).tag)
    with pytest.raises(QuantizedModelError, match=rf"the int8 model of {LITE0} for size {SMALL} \({shipped}-00000000\) "
                                                  r"was quantized with another recipe than this imgidx's and is not in "
                                                  r"the cache \(.*\): rebuild the index with --reindex"):
        runtime.load_backbone(LITE0, None, "openvino", "int8", size=SMALL, quantization=f"{shipped}-00000000")


def make_folder(folder: Path, count: int = photos.MIN_PHOTOS) -> Path:
    """``count`` distinct photos: the sample photos, mirrored and cropped."""
    sources = sorted(PHOTOS.glob("*.jpg"))
    for i in range(count):
        image = Image.open(sources[i % len(sources)]).convert("RGB")
        if i >= len(sources):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((0, 0, image.width * 3 // 4, image.height))
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:02}.jpg", quality=90)
    return folder


def test_cli_calibrates_on_the_users_photos_checks_and_indexes_with_it(tmp_path):
    folder = make_folder(tmp_path / "photos")
    result = imgidx("runtime", "calibrate", folder, "--model", LITE0, "--size", SMALL)
    assert result.exit_code == 0, result.output
    calibrated = photos.from_folder(folder).id
    assert result.stdout.splitlines()[0].startswith(
        f"{LITE0} int8 for size {SMALL}, calibrated on 8 photos under {folder} ({calibrated}): "
    )
    assert photos.active(LITE0, SMALL) == calibrated
    result = imgidx("runtime", "check", folder, "--model", LITE0, "--size", SMALL)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    line = (r"same top class at [\d.]+% of \d+ class-map positions \(worst photo \d+%: .*\); 224-crop top-5 "
            r"overlap \d+%, on 8 photos")
    assert re.fullmatch(rf"{LITE0} int8 vs fp32: {line}", lines[0]), lines[0]
    assert re.fullmatch(rf"{LITE0} bf16 vs fp32: {line}", lines[1]), lines[1]
    recorded = recipes.quantization_id(LITE0, calibrated)
    assert lines[2] == f"int8 calibration: {recorded}"

    db = tmp_path / "index.db"
    result = imgidx("index", folder, "--db", db, "--model", LITE0, "--size", SMALL, "--precision", "int8", "-q")
    assert result.exit_code == 0, result.output
    described = f"{LITE0} at size {SMALL} (openvino int8 calibrated on {recorded})"
    assert described in result.stdout
    assert f"settings: {described}" in imgidx("stats", "--db", db).stdout
    result = imgidx("runtime", "calibrate", "--model", LITE0, "--size", SMALL)
    assert result.exit_code == 0, result.output
    assert photos.active(LITE0, SMALL) == photos.shipped().id
    assert imgidx("index", folder, "--db", db, "-q").stdout.startswith("0 indexed, 8 unchanged")
    result = imgidx("index", folder, "--db", db, "-q", "--reindex")
    assert f"(openvino int8 calibrated on {recipes.quantization_id(LITE0, photos.shipped().id)})" in result.stdout


@pytest.mark.slow
def test_vgg16_converted_with_its_fc_head_and_int8_on_random_weights(vgg_files, sample_photos):
    from indexer.models import vgg16

    reference = vgg16.VGG16(vgg_files.tensors, "fp32", head=vgg16.HEAD_CONV)
    weights = str(vgg_files.checkpoint)
    converted = runtime.load_backbone("vgg16", weights, "openvino", "fp32", size=VGG_SIZE)
    batch = np.stack([images.resize(p, (224, 256)) for p in list(sample_photos.values())[:2]])
    assert relative_error(reference.class_map(batch), converted.class_map(batch)) < FP32_TOLERANCE
    int8 = runtime.load_backbone("vgg16", weights, "openvino", "int8", size=VGG_CALIBRATION_SIZE)
    found = agreement.compare(reference, int8, sample_photos, VGG_SIZE)
    assert found.same_top > 0.7 and found.top5_overlap >= 0.6, found
    reference.close()
