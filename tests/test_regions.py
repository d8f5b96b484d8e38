"""Region scoring: softmax per position, cell weights from the geometry, top classes above a floor."""

import numpy as np
import pytest

from indexer import regions
from indexer.geometry import Layer, derive_geometry
from indexer.inference import softmax

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


def test_cell_scores_are_weighted_mean_probabilities():
    rng = np.random.default_rng(0)
    geometry = derive_geometry(VGG_LIKE, (448, 608))
    logits = rng.normal(0, 3, (2, *geometry.map_shape, K)).astype(np.float32)
    weights = geometry.cell_weights()
    result = regions.score_batch(logits, weights)
    probs = softmax(logits.astype(np.float64))
    for i, scores in enumerate(result):
        expected_cells = np.einsum("hwk,hwc->ck", probs[i], weights)
        for label in scores.cell_labels:
            assert label.score == pytest.approx(expected_cells[label.cell, label.class_id], rel=1e-4)
        expected_image = probs[i].mean(axis=(0, 1))
        top = probs[i].argmax(-1).ravel()
        for label in scores.image_labels:
            assert label.score == pytest.approx(expected_image[label.class_id], rel=1e-4)
            assert label.share == pytest.approx(np.mean(top == label.class_id))


def test_positions_count_where_their_receptive_field_sits_not_where_they_are_in_the_array():
    # VGG-like at 448x448: an 8x8 map whose centres sit at 111.5 + 32 j px. Map row 2 (centre 175.5 px,
    # Voronoi tile 159.5-191.5 px) lies wholly in the middle third of the image (148.8-298.2 px), although
    # a naive split of the array's 8 rows into thirds would put it in the top cells.
    geometry = derive_geometry(VGG_LIKE, (448, 448))
    assert geometry.map_shape == (8, 8)
    weights = geometry.cell_weights()
    for row, cells in ((0, {0, 1, 2}), (2, {3, 4, 5}), (7, {6, 7, 8})):
        classes = [[7 if r == row else 9 for _ in range(8)] for r in range(8)]
        result = regions.score_map(peaked((8, 8), classes), weights)
        assert {label.cell for label in result.cell_labels if label.class_id == 7 and label.coverage > 0} == cells


def test_coverage_is_the_area_share_of_the_cell_whose_top_class_it_is():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))  # 3x3 map, one position per cell
    classes = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    result = regions.score_map(peaked((3, 3), classes), geometry.cell_weights())
    best = {label.cell: label for label in result.cell_labels if label.coverage > 0}
    assert [best[cell].class_id for cell in range(9)] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert all(label.coverage == pytest.approx(1.0) for label in best.values())
    assert {label.class_id: label.share for label in result.image_labels if label.share} == {
        c: pytest.approx(1 / 9) for c in range(1, 10)
    }


def test_only_top_classes_above_the_floor_are_kept_but_never_none():
    geometry = derive_geometry((Layer(32, 32, "VALID"),), (96, 96))
    flat = np.zeros((3, 3, K), dtype=np.float32)  # every class at 1/1000, below the floor
    result = regions.score_map(flat, geometry.cell_weights())
    assert len(result.image_labels) == 1 and sorted(label.cell for label in result.cell_labels) == list(range(9))
    many = np.zeros((3, 3, K), dtype=np.float32)
    many[..., :50] = 6.0  # fifty classes at ~1.9 % each, all above the floor
    result = regions.score_map(many, geometry.cell_weights())
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
    result = regions.score_map(logits, geometry.cell_weights())
    dog = sum(label.score for label in result.cell_labels if label.cell == 0 and 151 <= label.class_id < 156)
    probs = softmax(logits[0, 0].astype(np.float64))
    assert dog == pytest.approx(probs[151:156].sum(), rel=1e-5)
    assert dog > 0.5 and max(label.score for label in result.cell_labels if label.cell == 0) < 0.25


def test_a_map_that_does_not_fit_the_weights_is_refused():
    geometry = derive_geometry(VGG_LIKE, (448, 448))
    with pytest.raises(ValueError, match=r"do not fit a 7x8 class map"):
        regions.score_batch(np.zeros((1, 7, 8, K), dtype=np.float32), geometry.cell_weights())
