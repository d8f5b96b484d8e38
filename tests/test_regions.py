"""Region evidence: per-position softmax over the cell's area and window-pooled logits, top classes kept."""

import numpy as np
import pytest

from dataclasses import replace

from indexer import calibration, regions
from indexer.geometry import Layer, derive_geometry
from indexer.regions import softmax

PLAIN = calibration.uncalibrated("test")  # every class alike: kept in order of evidence


def score_one(logits, geometry, cal=PLAIN):
    """What the index stores for one image seen in one view with both parts: ``logits (h, w, K)``."""
    return regions.score_batch([regions.View(logits[None], regions.pooling(geometry, True))], cal)[0]

K = 1000
#: A VGG-16-like stack: five SAME 2x2 pools to stride 32, then the 7x7 VALID fc6 that moves the first
#: receptive-field centre 3 * 32 px inward.
VGG_LIKE = (Layer(3, 1), Layer(2, 2), Layer(2, 2), Layer(2, 2), Layer(2, 2), Layer(2, 2), Layer(7, 1, "VALID"))


def peaked(map_hw, classes, strength=12.0):
    """Logits whose position (r, c) strongly favours ``classes[r][c]``."""
    logits = np.zeros((*map_hw, K), dtype=np.float32)
    for r in range(map_hw[0]):
        for c in range(map_hw[1]):
            logits[r, c, classes[r][c]] = strength
    return logits


def test_cell_evidence_is_the_mean_of_owned_probabilities_and_cell_pooled_softmax_over_the_views_damped_off_peak():
    rng = np.random.default_rng(0)
    fine, coarse = derive_geometry(VGG_LIKE, (448, 608)), derive_geometry(VGG_LIKE, (320, 448))
    views = [
        regions.View(rng.normal(0, 3, (2, *fine.map_shape, K)).astype(np.float32), regions.pooling(fine, True)),
        regions.View(rng.normal(0, 3, (2, *coarse.map_shape, K)).astype(np.float32), regions.pooling(coarse, False)),
    ]
    result = regions.score_batch(views, PLAIN)
    for i, scores in enumerate(result):
        parts = []
        for view in views:
            logits = view.logits[i].astype(np.float64)
            parts.append(np.einsum("hwk,hwc->ck", softmax(logits), view.pooling.cell))
            if view.pooling.window is not None:
                parts.append(softmax(np.einsum("hwk,hwc->ck", logits, view.pooling.window)))
        mean = sum(parts) / 3
        expected_cells = mean * np.minimum(1.0, mean / mean.max(axis=0) / regions.PEAK_SHARE)
        for label in scores.cell_labels:
            assert label.score == pytest.approx(expected_cells[label.cell, label.class_id], rel=1e-4)
        top = views[0].logits[i].argmax(-1).ravel()
        for label in scores.image_labels:
            assert label.score == pytest.approx(expected_cells[:, label.class_id].max(), rel=1e-4)
            assert label.share == pytest.approx(np.mean(top == label.class_id))


def test_a_window_is_the_cell_grown_by_half_a_cell_weighted_by_the_area_each_position_owns():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (288, 288))  # 9x9 map, one 32 px tile per position
    assert geometry.window_weights(0.5).sum(axis=(0, 1)) == pytest.approx(np.ones(9))
    rows = geometry.rows.window_weights(0.5)
    # the middle third spans 95.5-191.5 px; grown by 48 px a side, 47.5-239.5 px: tiles 1 and 7 half inside
    assert rows[:, 1] * 6 == pytest.approx([0, 0.5, 1, 1, 1, 1, 1, 0.5, 0])
    # the first third's window is clipped to the image: -0.5-143.5 px, four and a half tiles
    assert rows[:, 0] * 4.5 == pytest.approx([1, 1, 1, 1, 0.5, 0, 0, 0, 0])
    coarse = derive_geometry(VGG_LIKE, (224, 224))  # a single position for all nine cells
    assert coarse.window_weights(0.5).reshape(9).tolist() == [1.0] * 9


def test_positions_count_where_their_receptive_field_sits_not_where_they_are_in_the_array():
    # VGG-like at 448x448: an 8x8 map whose centres sit at 111.5 + 32 j px. Map row 2 (centre 175.5 px,
    # Voronoi tile 159.5-191.5 px) lies wholly in the middle third of the image (148.8-298.2 px), although
    # a naive split of the array's 8 rows into thirds would put it in the top cells.
    geometry = derive_geometry(VGG_LIKE, (448, 448))
    assert geometry.map_shape == (8, 8)
    for row, cells in ((0, {0, 1, 2}), (2, {3, 4, 5}), (7, {6, 7, 8})):
        classes = [[7 if r == row else 9 for _ in range(8)] for r in range(8)]
        result = score_one(peaked((8, 8), classes), geometry)
        assert {label.cell for label in result.cell_labels if label.class_id == 7 and label.coverage > 0} == cells


def test_coverage_is_the_area_share_of_the_cell_whose_top_class_it_is():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))  # 3x3 map, one position per cell
    classes = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    result = score_one(peaked((3, 3), classes), geometry)
    best = {label.cell: label for label in result.cell_labels if label.coverage > 0}
    assert [best[cell].class_id for cell in range(9)] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert all(label.coverage == pytest.approx(1.0) for label in best.values())
    assert {label.class_id: label.share for label in result.image_labels if label.share} == {
        c: pytest.approx(1 / 9) for c in range(1, 10)
    }


def test_only_top_classes_above_the_floor_are_kept_but_never_none():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))
    flat = np.zeros((3, 3, K), dtype=np.float32)  # every class at 1/1000, below the floor
    result = score_one(flat, geometry)
    assert len(result.image_labels) == 1 and sorted(label.cell for label in result.cell_labels) == list(range(9))
    many = np.zeros((3, 3, K), dtype=np.float32)
    many[..., :50] = 6.0  # fifty classes at ~1.9 % each, all above the floor
    result = score_one(many, geometry)
    assert len(result.image_labels) == regions.IMAGE_TOP_K
    assert len(result.cell_labels) == 9 * regions.CELL_TOP_K
    assert all(label.score >= regions.SCORE_FLOOR for label in result.cell_labels)
    for cell in range(9):
        scores = [label.score for label in result.cell_labels if label.cell == cell]
        assert scores == sorted(scores, reverse=True)


def test_sibling_classes_can_be_summed_from_the_stored_rows():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))
    logits = np.zeros((3, 3, K), dtype=np.float32)
    logits[0, 0, 151:156] = 6.0  # five dog breeds share the top-left position's probability
    pooling = regions.pooling(geometry, True)
    result = score_one(logits, geometry)
    dog = sum(label.score for label in result.cell_labels if label.cell == 0 and 151 <= label.class_id < 156)
    owned = softmax(logits[0, 0].astype(np.float64))
    windowed = softmax(np.einsum("hwk,hw->k", logits.astype(np.float64), pooling.window[..., 0]))
    assert dog == pytest.approx((owned[151:156].sum() + windowed[151:156].sum()) / 2, rel=1e-5)
    assert dog > 0.3 and max(label.score for label in result.cell_labels if label.cell == 0) < dog / 4


def test_a_rare_class_that_stands_out_is_kept_before_a_common_one_with_more_evidence():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))
    logits = np.zeros((3, 3, K), dtype=np.float32)
    logits[..., :13] = 4.0  # thirteen common classes with the most evidence
    logits[..., 500] = 3.5  # one rarely seen class with a little less
    priors = [0.01] * K
    priors[500] = 0.0001
    rare = replace(PLAIN, priors=tuple(priors), beta=0.5)
    kept = {label.class_id for label in score_one(logits, geometry, rare).cell_labels}
    assert 500 in kept
    plain = {label.class_id for label in score_one(logits, geometry).cell_labels}
    assert 500 not in plain


def test_an_object_counts_fully_in_its_cells_and_only_in_part_in_the_cells_it_leaks_into():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))  # one position per cell
    logits = np.zeros((3, 3, K), dtype=np.float32)
    logits[:, 0, 7] = 9.0  # a strong class 7 down the left column
    logits[:, 1, 7] = 4.0  # and a little of it in the middle column
    owned = softmax(logits[0, 1].astype(np.float64))[7]
    scores = {(label.cell, label.class_id): label.score for label in score_one(logits, geometry).cell_labels}
    peak = scores[(0, 7)]
    assert scores[(3, 7)] == pytest.approx(peak) and scores[(6, 7)] == pytest.approx(peak)
    leak = scores[(1, 7)]  # owned and pooled alike here: the evidence is `owned`, damped by its share of the peak
    assert leak == pytest.approx(owned * owned / peak / regions.PEAK_SHARE, rel=1e-4)
    assert leak < owned < regions.PEAK_SHARE * peak


def test_a_map_that_does_not_fit_the_weights_is_refused():
    geometry = derive_geometry(VGG_LIKE, (448, 448))
    with pytest.raises(ValueError, match=r"do not fit a 7x8 class map"):
        regions.score_batch([regions.View(np.zeros((1, 7, 8, K), dtype=np.float32), regions.pooling(geometry, True))], PLAIN)
