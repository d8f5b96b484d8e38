"""Class-map geometry: TF padding rules, the seed's VGG-16 figures, and the 3x3 cell weights."""

import numpy as np
import pytest

from indexer.geometry import GRID, Layer, derive_axis, derive_geometry, minimum_input

CONV = Layer(3, 1, "SAME")
POOL = Layer(2, 2, "VALID")
VGG16_LAYERS = (
    [CONV] * 2 + [POOL] + [CONV] * 2 + [POOL] + ([CONV] * 3 + [POOL]) * 3
    + [Layer(7, 1, "VALID"), Layer(1, 1, "VALID"), Layer(1, 1, "VALID")]
)


def test_vgg16_figures_from_the_seed():
    axis = derive_axis(VGG16_LAYERS, 448)
    assert (axis.map_size, axis.stride, axis.offset, axis.receptive_field) == (8, 32, 111.5, 404)
    assert derive_axis(VGG16_LAYERS, 224).map_size == 1
    assert minimum_input(VGG16_LAYERS) == 224


def test_same_padding_with_stride_two_pads_after_more_than_before():
    # TF SAME, k=3, s=2 on an even input pads 0 before and 1 after: output j centres on input 2j + 1.
    axis = derive_axis([Layer(3, 2, "SAME")], 8)
    assert (axis.map_size, axis.offset, axis.stride, axis.receptive_field) == (4, 1.0, 2, 3)
    # On an odd input the padding is symmetric: output j centres on input 2j.
    assert derive_axis([Layer(3, 2, "SAME")], 9).offset == 0.0


def test_too_small_input_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        derive_axis(VGG16_LAYERS, 100)


@pytest.mark.parametrize("hw", [(448, 448), (448, 608), (224, 224), (672, 448)])
def test_every_cell_is_fully_covered_by_positions(hw):
    weights = derive_geometry(VGG16_LAYERS, hw).cell_weights()
    assert weights.shape[-1] == GRID * GRID
    np.testing.assert_allclose(weights.sum(axis=(0, 1)), 1.0)
    assert (weights >= 0).all()


def test_positions_weigh_in_the_cells_their_centres_fall_in():
    geometry = derive_geometry(VGG16_LAYERS, (448, 448))
    weights = geometry.cell_weights()
    centres = geometry.rows.centers()
    third = 448 / 3
    for row in range(8):
        for col in range(8):
            cell = int((centres[row] + 0.5) // third) * GRID + int((centres[col] + 0.5) // third)
            assert weights[row, col].argmax() == cell


@pytest.mark.parametrize("hw", [(448, 448), (448, 672)])
def test_tile_and_cell_edges_are_the_boundaries_the_weights_are_computed_over(hw):
    """A position's weight in a cell is the overlap of its tile with the cell over the cell's length."""
    geometry = derive_geometry(VGG16_LAYERS, hw)
    for axis in (geometry.rows, geometry.cols):
        tiles, cells = axis.tile_edges(), axis.cell_edges()
        assert (tiles[0], tiles[-1]) == (cells[0], cells[-1]) == axis.extent == (-0.5, axis.input_size - 0.5)
        assert len(tiles) == axis.map_size + 1 and len(cells) == GRID + 1
        centres = axis.centers()
        assert (tiles[:-1] <= centres).all() and (centres <= tiles[1:]).all()
        np.testing.assert_allclose(tiles[1:-1], (centres[1:] + centres[:-1]) / 2)
        overlap = np.clip(
            np.minimum(tiles[1:, None], cells[None, 1:]) - np.maximum(tiles[:-1, None], cells[None, :-1]), 0, None
        )
        np.testing.assert_allclose(overlap / np.diff(cells)[None, :], axis.cell_weights())
    row_edges, col_edges = geometry.cell_edges()
    np.testing.assert_array_equal(row_edges, geometry.rows.cell_edges())
    np.testing.assert_array_equal(col_edges, geometry.cols.cell_edges())
