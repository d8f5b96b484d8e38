"""`imgidx segment`'s figure and text map, on the fake backbone (real geometry, no TensorFlow)."""

from __future__ import annotations

import itertools
import textwrap

import numpy as np
import pytest
from PIL import Image

import fake_backbone
from fake_backbone import FakeBackbone
from indexer import figure, images, inference, labels, pipeline, store
from indexer.calibration import percent
from indexer.geometry import GRID, derive_geometry
from indexer.inference import Prediction, Segmentation

SIZE = 192
RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (128, 128, 128)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A grey 288x432 photo (192x288 at working size): red in the top-left cell, blue across the bottom row."""
    pixels = np.full((288, 432, 3), GREY, dtype=np.uint8)
    pixels[:96, :144] = RED
    pixels[210:, :] = BLUE
    path = tmp_path_factory.mktemp("figure") / "painted.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def segmentation(photo):
    return inference.segment(FakeBackbone(), images.load(photo, min_side=SIZE).pixels, SIZE)


def test_each_cell_leads_with_the_label_and_confidence_show_prints(photo, segmentation, tmp_path):
    engine = store.open_index(str(tmp_path / "index.db"), create=True)
    pipeline.index(engine, [photo.parent], lambda settings: FakeBackbone(), model="fake", size=SIZE, precision="fp32")
    with engine.connect() as conn:
        report = store.image_report(conn, str(photo))
    engine.dispose()
    stored = [(cell[0].class_id, cell[0].score) for cell in report.cells]
    assert [(p.class_index, pytest.approx(p.probability, abs=1e-6)) for p in segmentation.cells] == stored
    red, blue = (fake_backbone.PALETTE[c] for c in (RED, BLUE))
    assert segmentation.cells[0].class_index == red
    assert [p.class_index for p in segmentation.cells[GRID * (GRID - 1):]] == [blue] * GRID


def test_the_overlay_panel_draws_the_map_the_stored_cells_and_their_leading_labels(segmentation):
    drawn = figure.build_figure(segmentation, "painted.png: fake")
    try:
        panels = {axes.get_label(): axes for axes in drawn.axes}
        assert set(figure.PANELS) <= set(panels) and len(drawn.axes) == len(figure.PANELS) + 1  # + colour bar
        overlay = panels["overlay"]
        geometry = segmentation.geometry
        row_edges, col_edges = geometry.cell_edges()
        horizontal = sorted(line.get_ydata()[0] for line in overlay.get_lines() if np.ptp(line.get_ydata()) == 0)
        vertical = sorted(line.get_xdata()[0] for line in overlay.get_lines() if np.ptp(line.get_xdata()) == 0)
        np.testing.assert_allclose(horizontal, row_edges[1:-1])
        np.testing.assert_allclose(vertical, col_edges[1:-1])
        assert (overlay.get_xlim(), overlay.get_ylim()) == ((col_edges[0], col_edges[-1]), (row_edges[-1], row_edges[0]))

        (mesh,) = overlay.collections
        corners = mesh.get_coordinates()
        np.testing.assert_allclose(corners[0, :, 0], geometry.cols.tile_edges())
        np.testing.assert_allclose(corners[:, 0, 1], geometry.rows.tile_edges())
        assert mesh.get_array().shape == segmentation.class_map.shape

        texts = {(round(t.get_position()[0], 3), round(t.get_position()[1], 3)): t.get_text() for t in overlay.texts}
        assert len(texts) == GRID * GRID
        for cell, leader in enumerate(segmentation.cells):
            row, col = divmod(cell, GRID)
            centre = (round((col_edges[col] + col_edges[col + 1]) / 2, 3), round((row_edges[row] + row_edges[row + 1]) / 2, 3))
            name = textwrap.fill(labels.class_name(leader.class_index), figure.CELL_LABEL_CHARACTERS)
            assert texts[centre] == f"{name}\n{percent(leader.probability)}"
    finally:
        from matplotlib import pyplot as plt

        plt.close(drawn)


def test_the_figure_is_written_with_three_panels(segmentation, tmp_path):
    out = tmp_path / "deep" / "map.png"
    figure.save_figure(segmentation, out, "painted.png: fake")
    width, height = Image.open(out).size
    assert width > 2.5 * height  # three panels side by side


def _delta_e(first, second) -> float:
    from skimage.color import deltaE_ciede2000, rgb2lab

    lab = rgb2lab(np.array([first[:3], second[:3]], dtype=float)[None])[0]
    return float(deltaE_ciede2000(lab[0], lab[1]))


def test_colours_are_told_apart_and_other_stands_out():
    """CIEDE2000 distance: about 2 is a just-noticeable difference; the old Paired palette put "other" at 14
    from its light blue."""
    colors = figure.class_colors(figure.MAX_LEGEND_CLASSES + 1, with_other=True)
    classes, other = colors[:-1], colors[-1]
    assert len(set(colors)) == len(colors)
    assert min(_delta_e(a, b) for a, b in itertools.combinations(classes, 2)) > 15
    assert min(_delta_e(c, other) for c in classes) > 25
    with pytest.raises(ValueError, match="relabel first"):
        figure.class_colors(figure.MAX_LEGEND_CLASSES + 1, with_other=False)


def test_beyond_the_palette_the_rarest_classes_become_other():
    counts = np.arange(1, 14)  # class c covers c + 1 positions
    class_map = np.repeat(np.arange(13) * 10, counts)[None]
    relabeled, legend = figure.relabel(class_map)
    assert len(legend) == figure.MAX_LEGEND_CLASSES + 1 and legend[-1] == "other (4 classes)"
    assert legend[:-1] == [labels.class_name(c) for c in range(40, 130, 10)]
    assert (relabeled[class_map < 40] == figure.MAX_LEGEND_CLASSES).all()


def _map(class_map: np.ndarray) -> Segmentation:
    h, w = class_map.shape
    geometry = derive_geometry(FakeBackbone.layers, (h * 32, w * 32))
    cells = tuple(Prediction(0, 0.0) for _ in range(GRID * GRID))
    return Segmentation(np.zeros((h * 32, w * 32, 3), np.uint8), class_map, np.zeros((h, w, 1)), geometry, cells)


def _legend(text: str) -> dict[str, str]:
    entries = "  ".join(text.split("\n\n")[-1].splitlines()).split("  ")
    return dict(entry.split("=", 1) for entry in entries)


@pytest.mark.parametrize("width", [15, 30, 60, 200])
def test_text_map_fits_the_width_and_keys_name_every_class(width):
    rng = np.random.default_rng(3)
    class_map = rng.choice([281, 285, 967, 968, 504, 532, 923], size=(14, 21), p=[.4, .2, .1, .1, .1, .05, .05])
    text = figure.text_map(_map(class_map), width)
    assert max(len(line) for line in text.splitlines()) <= width
    legend = _legend(text)
    most_first = sorted(set(class_map.ravel()), key=lambda c: (-(class_map == c).sum(), c))
    assert legend == {key: labels.class_name(c) for key, c in zip(figure.KEY_CHARACTERS, most_first)}
    bands = text.split("\n\n")[:-1]
    rebuilt = np.concatenate(
        [np.array([list(row.replace(" ", "")) for row in band.splitlines() if not row.startswith("columns ")]) for band in bands],
        axis=1,
    )
    names = np.vectorize(legend.__getitem__)(rebuilt)
    assert (names == np.vectorize(labels.class_name)(class_map)).all()
    columns = class_map.shape[1]
    assert len(bands) == (1 if width >= columns else -(-columns // width))
    assert (" " in bands[0].splitlines()[-1]) == (width >= 2 * columns - 1)


def test_text_map_of_many_classes_keys_them_with_two_characters():
    class_map = np.arange(70).reshape(7, 10)
    text = figure.text_map(_map(class_map), 400)
    rows = text.split("\n\n")[0].splitlines()
    assert all(len(key) == 2 for row in rows for key in row.split(" "))
    assert len(_legend(text)) == 70


def test_text_map_width_comes_from_the_terminal_else_80_columns(monkeypatch):
    import os

    class_map = np.repeat(np.arange(60) + 100, 2).reshape(4, 30)
    monkeypatch.setenv("COLUMNS", "45")
    lines = figure.text_map(_map(class_map)).splitlines()
    assert max(len(line) for line in lines) <= 45
    assert lines[0] == "AABBCCDDEEFFGGHHIIJJKKLLMMNNOO"  # spaced, it would take 59 columns

    def no_terminal(fd=None):
        raise OSError("not a terminal")

    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(os, "get_terminal_size", no_terminal)
    lines = figure.text_map(_map(class_map)).splitlines()
    assert max(len(line) for line in lines) <= figure.FALLBACK_COLUMNS == 80
    assert lines[0] == " ".join("AABBCCDDEEFFGGHHIIJJKKLLMMNNOO")
