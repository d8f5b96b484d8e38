"""The object detector: decoding and suppression on made-up outputs, NanoDet on real photos through the
published preprocessing, batches, reduced decodes, the loaders, and OpenVINO against TensorFlow."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import images, objects, runtime
from indexer.boxes import Box
from indexer.labels import COCO_CLASSES, object_class

PHOTOS = Path(__file__).parent / "photos"
needs_openvino = pytest.mark.skipif(not runtime.openvino_installed(), reason="OpenVINO is not installed")

#: What NanoDet-m finds on the sample photos (TensorFlow, fp32): the best box's class, confidence, and box
#: in photo pixels.
KNOWN = {
    "motorcycle.jpg": ("motorcycle", 0.79, (107, 79, 688, 454)),
    "astronaut.jpg": ("person", 0.73, (15, 14, 364, 508)),
    "coffee.jpg": ("cup", 0.53, (142, 11, 427, 398)),
}
#: A box side may move this share of the photo's side (resampling differences between the two paths).
BOX_TOLERANCE = 0.02
SCORE_TOLERANCE = 0.02
#: The published preprocessing (NanoDet's config), written out here apart from the detector's constants.
REFERENCE_MEAN_BGR = (103.53, 116.28, 123.675)
REFERENCE_STD_BGR = (57.375, 57.12, 58.395)


def reference_input(rgb: np.ndarray) -> np.ndarray:
    """The photo stretched to 416x416, BGR, normalised per channel, channels first: ``(1, 3, 416, 416)``."""
    stretched = np.asarray(Image.fromarray(rgb).resize((416, 416), Image.Resampling.BILINEAR), np.float32)
    bgr = stretched[..., ::-1]
    return ((bgr - REFERENCE_MEAN_BGR) / REFERENCE_STD_BGR).transpose(2, 0, 1)[None].astype(np.float32)


def name_of(box: Box) -> str:
    return COCO_CLASSES[box.class_id - object_class(0)]


def close_box(got, want, size, tolerance=BOX_TOLERANCE) -> bool:
    width, height = size
    limits = np.array([width, height, width, height]) * tolerance
    return bool(np.all(np.abs(np.array(got, float) - np.array(want, float)) <= limits))


@pytest.fixture(scope="module")
def sample():
    return {name: images.load(PHOTOS / name).pixels for name in KNOWN}


@pytest.fixture(scope="module")
def detector():
    """TensorFlow's detector, built once for the module (and shared with other modules of the run)."""
    return objects.build_detector(objects.TF)


# --- Decoding, made-up outputs -----------------------------------------------------------------------------


def made_up_outputs(position: int, klass: int, sides_in_strides, score: float = 0.9):
    """NanoDet's outputs for one photo with one position scoring ``score`` for ``klass``, its four
    distributions peaked at ``sides_in_strides`` (whole bins)."""
    points, _ = objects.centres()
    scores = np.zeros((len(points), objects.NUM_CLASSES), np.float32)
    scores[position, klass] = score
    distributions = np.zeros((len(points), objects.SIDES, objects.BINS), np.float32)
    for side, bin_ in enumerate(sides_in_strides):
        distributions[position, side, bin_] = 60.0  # softmax ~ one-hot
    return scores, distributions.reshape(len(points), -1)


def level_position(level: int, row: int, column: int) -> int:
    before = sum((objects.INPUT_SIZE // s) ** 2 for s in objects.STRIDES[:level])
    return before + row * (objects.INPUT_SIZE // objects.STRIDES[level]) + column


def test_positions_sit_half_a_stride_in():
    points, steps = objects.centres()
    assert len(points) == 52 * 52 + 26 * 26 + 13 * 13
    assert points[0].tolist() == [4.0, 4.0] and steps[0] == 8
    assert points[level_position(1, 3, 5)].tolist() == [(5 + 0.5) * 16, (3 + 0.5) * 16]
    assert points[-1].tolist() == [416 - 16, 416 - 16] and steps[-1] == 32


def test_one_peaked_distribution_decodes_to_its_exact_box():
    position = level_position(1, 3, 5)  # stride 16, centre (88, 56)
    scores, distributions = made_up_outputs(position, klass=7, sides_in_strides=(2, 1, 3, 4))
    [box] = objects.photo_boxes(scores, distributions, (416, 416))
    assert box.class_id == object_class(7) and box.confidence == pytest.approx(0.9)
    assert box[1:5] == pytest.approx((88 - 32, 56 - 16, 88 + 48, 56 + 64), abs=1e-3)
    # In pixels of a photo of another size: the stretch undone on each axis.
    [box] = objects.photo_boxes(scores, distributions, (832, 208))
    assert box[1:5] == pytest.approx((2 * 56, 40 / 2, 2 * 136, 120 / 2), abs=1e-3)


def test_boxes_are_clipped_to_the_photo_and_low_scores_left_out():
    scores, distributions = made_up_outputs(0, klass=0, sides_in_strides=(10, 10, 2, 2))
    [box] = objects.photo_boxes(scores, distributions, (416, 416))
    assert box[1:5] == pytest.approx((0, 0, 4 + 16, 4 + 16), abs=1e-3)
    low, distributions = made_up_outputs(0, klass=0, sides_in_strides=(1, 1, 1, 1), score=objects.MIN_SCORE / 2)
    assert objects.photo_boxes(low, distributions, (416, 416)) == []
    assert objects.photo_boxes(scores, distributions, (416, 416), min_score=0.95) == []


def test_suppression_is_per_class_and_keeps_the_best():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 16]], np.float32)
    classes = np.array([1, 1, 2, 1, 1])
    scores = np.array([0.5, 0.9, 0.3, 0.4, 0.6], np.float32)
    # 1 (best); 0 overlaps it by 9/11 > 0.6: dropped; 4 overlaps 1 by 90/170 < 0.6: kept; 2 is another class.
    assert objects.suppress(boxes, classes, scores).tolist() == [1, 4, 3, 2]
    assert objects.suppress(boxes, classes, scores, limit=2).tolist() == [1, 4]


# --- The real model ----------------------------------------------------------------------------------------


def test_the_network_finds_the_known_objects_through_the_published_preprocessing(detector, sample):
    """The graph as read, on the reference input, decoded: the known best box of each photo."""
    import tensorflow as tf

    network = objects._tensorflow_network()
    for name, (klass, score, box) in KNOWN.items():
        pixels = sample[name]
        outputs = network.graph({network.input_name: tf.constant(reference_input(pixels))},
                                network.scores + network.distributions)
        scores = np.concatenate([o.numpy()[0] for o in outputs[:3]])
        distributions = np.concatenate([o.numpy()[0] for o in outputs[3:]])
        size = (pixels.shape[1], pixels.shape[0])
        best = objects.photo_boxes(scores, distributions, size)[0]
        assert name_of(best) == klass, name
        assert best.confidence == pytest.approx(score, abs=SCORE_TOLERANCE), name
        assert close_box(best[1:5], box, size), (name, best)


def test_the_detector_finds_the_same(detector, sample):
    found = detector.detect(list(sample.values()))
    for (name, (klass, score, box)), boxes in zip(KNOWN.items(), found):
        size = (sample[name].shape[1], sample[name].shape[0])
        assert name_of(boxes[0]) == klass and boxes[0].confidence == pytest.approx(score, abs=SCORE_TOLERANCE)
        assert close_box(boxes[0][1:5], box, size), (name, boxes[0])
        assert all(b.confidence >= objects.MIN_SCORE for b in boxes) and len(boxes) <= objects.MAX_BOXES
        assert [b.confidence for b in boxes] == sorted((b.confidence for b in boxes), reverse=True)


def test_a_batch_finds_what_each_photo_finds_alone(detector, sample):
    photos = list(sample.values())
    together = detector.detect(photos)
    for photo, boxes in zip(photos, together):
        [alone] = detector.detect([photo])
        assert [b.class_id for b in alone] == [b.class_id for b in boxes]
        assert np.allclose(np.array(alone, float), np.array(boxes, float), atol=1e-3)
    assert detector.detect([]) == []
    with pytest.raises(ValueError):
        detector.detect(photos, sizes=[(1, 1)])


def test_boxes_are_in_photo_pixels_for_a_reduced_decode(detector, sample):
    """A JPEG decoded at half size, with the photo's own size given: the same boxes as the full decode."""
    reduced = images.load(PHOTOS / "motorcycle.jpg", min_side=200)
    assert reduced.pixels.shape[1] < reduced.width
    [boxes] = detector.detect([reduced.pixels], sizes=[(reduced.width, reduced.height)])
    klass, _, box = KNOWN["motorcycle.jpg"]
    assert name_of(boxes[0]) == klass
    assert close_box(boxes[0][1:5], box, (reduced.width, reduced.height), tolerance=2 * BOX_TOLERANCE)


def test_a_missing_model_file_is_an_error_naming_it(tmp_path):
    from indexer.models.nanodet import NanoDet

    with pytest.raises(objects.ObjectDetectorError, match="missing.json"):
        NanoDet(tmp_path / "missing.json")
    broken = tmp_path / "nanodet.json"
    broken.write_text("{}")
    with pytest.raises(objects.ObjectDetectorError, match="not a TF.js graph model"):
        NanoDet(broken)


# --- Loading -------------------------------------------------------------------------------------------------


def test_importing_the_module_loads_no_framework(tmp_path):
    code = """
        import sys
        import indexer.objects
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "openvino", "nncf", "keras")))
    """
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_runtimes_resolve():
    assert objects.resolve("tf") == ("tf", "fp32")
    expected = objects.OPENVINO if runtime.openvino_installed() else objects.TF
    assert objects.resolve()[0] == expected
    with pytest.raises(ValueError):
        objects.resolve("tf", "int8")
    with pytest.raises(ValueError):
        objects.resolve("gpu")


def test_loaders_hand_one_detector_per_thread_and_pickle(detector):
    loader = objects.Detectors(objects.TF)
    first, second = loader(), loader()
    assert first is not second and first.network is second.network  # one TF function, shared
    assert objects.Detectors(objects.TF)() is first
    assert objects.load_detector(objects.TF) is first
    again = pickle.loads(pickle.dumps(objects.Detectors(objects.TF)))
    assert again() is first


# --- OpenVINO ------------------------------------------------------------------------------------------------


@needs_openvino
def test_openvino_answers_as_tensorflow(detector, sample):
    """fp32: the same outputs within float rounding; bf16 (the default where the CPU has it): the same
    known boxes."""
    batch = objects.model_input(list(sample.values()))
    expected = detector.raw(batch)
    fp32 = objects.build_detector(objects.OPENVINO, "fp32")
    for want, got in zip(expected, fp32.raw(batch)):
        assert np.allclose(want, got, atol=1e-4)
    bf16 = objects.build_detector(objects.OPENVINO, "bf16")
    for (name, (klass, score, box)), boxes in zip(KNOWN.items(), bf16.detect(list(sample.values()))):
        size = (sample[name].shape[1], sample[name].shape[0])
        assert name_of(boxes[0]) == klass and boxes[0].confidence == pytest.approx(score, abs=SCORE_TOLERANCE)
        assert close_box(boxes[0][1:5], box, size)


@needs_openvino
def test_the_converted_model_is_shipped_else_converted_once_and_cached(tmp_path, monkeypatch):
    from indexer.models.weights import CACHE_ENV
    from indexer.runtime import cache, openvino_detector, openvino_model

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # an empty cache, as on a new machine

    folder = cache.fp32_dir(objects.MODEL_NAME, openvino_detector.model_digest())
    shipped = []
    openvino_detector.load("fp32", on_build=shipped.append)
    assert (shipped, folder.is_dir()) == ([], False)  # read from the package (bench/shipped_models.py)
    monkeypatch.setattr(openvino_model, "SHIPPED", ())
    messages = []
    openvino_detector.load("fp32", on_build=messages.append)
    assert folder.is_dir()
    assert not messages or "converting" in messages[0]
    again = []
    openvino_detector.load("fp32", on_build=again.append)
    assert again == []


@needs_openvino
@pytest.mark.slow
def test_int8_is_built_once_and_still_finds_the_known_objects(sample):
    from indexer.runtime import openvino_detector

    messages = []
    compiled, quantization = openvino_detector.load(runtime.INT8, on_build=messages.append)
    assert quantization == openvino_detector.quantization_id()
    again = []
    openvino_detector.load(runtime.INT8, on_build=again.append)
    assert again == []
    int8 = objects.ObjectDetector(compiled.runner(), objects.OPENVINO, runtime.INT8, quantization)
    for (name, (klass, _, box)), boxes in zip(KNOWN.items(), int8.detect(list(sample.values()))):
        size = (sample[name].shape[1], sample[name].shape[0])
        assert name_of(boxes[0]) == klass
        assert close_box(boxes[0][1:5], box, size, tolerance=3 * BOX_TOLERANCE)
