"""Where each class-map position sits in the image, and which 3x3 cells it speaks for.

A backbone describes its spatial layers as a sequence of `Layer(kernel, stride, padding)`, the same
sequence its network is built from. `derive_geometry` walks that sequence for one input size, per axis,
with TensorFlow's padding rules:

- ``VALID``: ``out = (in - k) // s + 1``, no padding.
- ``SAME``:  ``out = ceil(in / s)``, ``pad_total = max((out - 1) * s + k - in, 0)``, of which
  ``pad_total // 2`` goes before (top/left) and the rest after.

Coordinates are pixel centres: pixel ``i`` covers ``[i - 0.5, i + 0.5]``. If a position ``j`` of a layer's
input has its receptive-field centre at ``S * j + O`` with field size ``R``, the layer's output position
``j`` reads input positions ``j * s - pad_before .. j * s - pad_before + k - 1`` and so has

- stride   ``S' = S * s``
- offset   ``O' = O + S * ((k - 1) / 2 - pad_before)``
- field    ``R' = R + (k - 1) * S``

For TF-Slim VGG-16 at 448x448 this gives stride 32, offset 111.5 and field 404 (the seed's "receptive
field of 404 pixels"); fc6, a 7x7 VALID convolution, is what moves the first centre inward by 3 * 32 px and
shrinks the 14x14 pool5 map to 8x8.

Cells: the image is split into thirds along each axis. Every image pixel belongs to the map position whose
centre is nearest (a Voronoi tiling along each axis; the outermost positions also own the border
strips). The weight of position ``p`` in cell ``c`` is the share of ``c``'s area that ``p`` owns, so the
weights of one cell sum to 1 and a cell's score is a weighted mean over the positions that cover it.

Windows: a cell's *window* is the cell grown by ``margin`` cell sizes on every side (clipped to the image),
weighted the same way: by the share of the window's area each position owns. Pooling logits over the
window classifies the cell with some context around it, the way the network was trained: one average
over a region of features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # imported where used: the query path needs only the cell names, not numpy
    import numpy as np

GRID = 3
CELL_NAMES = (
    "top-left", "top-center", "top-right",
    "center-left", "center", "center-right",
    "bottom-left", "bottom-center", "bottom-right",
)


@dataclass(frozen=True)
class Layer:
    """One spatial layer: a square kernel, its stride and TF padding mode."""

    kernel: int
    stride: int
    padding: str = "SAME"


@dataclass(frozen=True)
class AxisGeometry:
    """Geometry along one image axis for one input length."""

    input_size: int
    map_size: int
    stride: int
    offset: float
    receptive_field: int

    def centers(self) -> np.ndarray:
        """Receptive-field centre of every map position, in input pixel coordinates."""
        import numpy as np

        return self.offset + self.stride * np.arange(self.map_size, dtype=np.float64)

    def cell_weights(self) -> np.ndarray:
        """``(map_size, GRID)`` share of each third of the axis owned by each map position."""
        return self._shares(0.0)

    def window_weights(self, margin: float) -> np.ndarray:
        """``(map_size, GRID)`` share of each third grown by ``margin`` thirds (clipped to the image) owned by
        each map position."""
        return self._shares(margin)

    @property
    def extent(self) -> tuple[float, float]:
        """The axis from the outer edge of its first pixel to that of its last, in pixel-centre coordinates."""
        return -0.5, self.input_size - 0.5

    def owned_spans(self) -> np.ndarray:
        """``(map_size, 2)`` the stretch of the axis each map position owns (`tile_edges`) in pixel-edge
        coordinates, where the axis spans ``[0, input_size]``."""
        import numpy as np

        edges = self.tile_edges() + 0.5
        return np.stack([edges[:-1], edges[1:]], axis=1)

    def tile_edges(self) -> np.ndarray:
        """``(map_size + 1)`` edges of the strips the map positions own (nearest centre, clipped to the image)."""
        import numpy as np

        centers = self.centers()
        low, high = self.extent
        return np.clip(np.concatenate(([low], (centers[1:] + centers[:-1]) / 2, [high])), low, high)

    def cell_edges(self) -> np.ndarray:
        """``(GRID + 1)`` edges of the thirds of the axis: where the stored cells begin and end."""
        import numpy as np

        low, high = self.extent
        return low + (high - low) / GRID * np.arange(GRID + 1)

    def _shares(self, margin: float) -> np.ndarray:
        import numpy as np

        tiles = self.tile_edges()
        tile_lo, tile_hi = tiles[:-1], tiles[1:]
        low, high = self.extent
        span = (high - low) / GRID
        starts = np.clip(low + span * (np.arange(GRID) - margin), low, high)
        stops = np.clip(low + span * (np.arange(GRID) + 1 + margin), low, high)
        overlap = np.clip(
            np.minimum(tile_hi[:, None], stops[None, :]) - np.maximum(tile_lo[:, None], starts[None, :]), 0.0, None
        )
        return overlap / (stops - starts)[None, :]


@dataclass(frozen=True)
class Geometry:
    """Where a backbone's class map lies over an input of one size: rows then columns."""

    rows: AxisGeometry
    cols: AxisGeometry

    @property
    def map_shape(self) -> tuple[int, int]:
        return self.rows.map_size, self.cols.map_size

    @property
    def stride(self) -> int:
        return self.rows.stride

    @property
    def receptive_field(self) -> int:
        return self.rows.receptive_field

    def cell_weights(self) -> np.ndarray:
        """``(h, w, 9)`` weight of each map position in each cell; every cell's weights sum to 1."""
        return _cells(self.rows.cell_weights(), self.cols.cell_weights())

    def window_weights(self, margin: float) -> np.ndarray:
        """``(h, w, 9)`` weight of each map position in each cell's window (module docstring); each sums to 1."""
        return _cells(self.rows.window_weights(margin), self.cols.window_weights(margin))

    def cell_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Edges of the 3x3 cells the index stores: ``(row edges, column edges)``, ``GRID + 1`` each."""
        return self.rows.cell_edges(), self.cols.cell_edges()

    def position_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """The receptive field of one map position as ``(top, left, bottom, right)``, unclipped."""
        half = self.receptive_field / 2
        cy, cx = self.rows.centers()[row], self.cols.centers()[col]
        return cy - half, cx - half, cy + half, cx + half


def cell_bounds(width: float, height: float) -> np.ndarray:
    """``(9, 4)`` the cells of a ``width`` x ``height`` photo as boxes ``(x0, y0, x1, y1)`` in pixel-edge
    coordinates (the photo spans ``[0, width] x [0, height]``), row-major like `CELL_NAMES`."""
    import numpy as np

    xs = np.linspace(0.0, width, GRID + 1)
    ys = np.linspace(0.0, height, GRID + 1)
    return np.array([(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(GRID) for c in range(GRID)])


def _cells(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per-axis weights ``(h, 3)`` and ``(w, 3)`` -> ``(h, w, 9)`` weights of the cells, row-major."""
    import numpy as np

    return np.einsum("ar,bc->abrc", rows, cols).reshape(rows.shape[0], cols.shape[0], GRID * GRID)


def derive_axis(layers: Sequence[Layer], size: int) -> AxisGeometry:
    """Walk ``layers`` over an input of ``size`` pixels (see the module docstring for the rules)."""
    if size < 1:
        raise ValueError(f"input size must be positive, got {size}")
    length, stride, offset, field = size, 1, 0.0, 1
    for layer in layers:
        k, s = layer.kernel, layer.stride
        if layer.padding == "VALID":
            if length < k:
                raise ValueError(f"input of {size} px is too small: a {k}x{k} VALID layer sees {length}")
            out, pad_before = (length - k) // s + 1, 0
        elif layer.padding == "SAME":
            out = math.ceil(length / s)
            pad_before = max((out - 1) * s + k - length, 0) // 2
        else:
            raise ValueError(f"unknown padding {layer.padding!r}")
        offset += stride * ((k - 1) / 2 - pad_before)
        field += (k - 1) * stride
        stride *= s
        length = out
    return AxisGeometry(size, length, stride, offset, field)


def derive_geometry(layers: Sequence[Layer], input_hw: tuple[int, int]) -> Geometry:
    """The class-map geometry of ``layers`` for an input of ``input_hw = (height, width)``."""
    return Geometry(derive_axis(layers, input_hw[0]), derive_axis(layers, input_hw[1]))


def total_stride(layers: Sequence[Layer]) -> int:
    """The map's stride in input pixels, whatever the input size."""
    return math.prod(layer.stride for layer in layers)


def minimum_input(layers: Sequence[Layer]) -> int:
    """The smallest input side that still yields a one-position map."""
    size = 1
    while True:
        try:
            derive_axis(layers, size)
            return size
        except ValueError:
            size += 1
