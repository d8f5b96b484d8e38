"""The seed's segmentation figure (its ``discrete_matshow``), the same map over the photo with the 3x3 cells the
index stores, and a plain-text rendering of a class map that fits the terminal."""

from __future__ import annotations

import shutil
import string
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer import labels
from indexer.boxes import is_face, label as box_label
from indexer.calibration import percent
from indexer.geometry import GRID
from indexer.inference import Segmentation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: A qualitative palette of saturated colours; its grey is left out so that only "other" is grey.
PALETTE = "tab10"
PALETTE_GREY = 7
#: More classes than the palette has colours are merged into "other", so every colour means one class.
MAX_LEGEND_CLASSES = 9
OTHER_COLOR = "#d9d9d9"
FIGURE_INCHES = (19, 6)
FIGURE_DPI = 100
#: How strongly the class map tints the photo in the overlay panel.
OVERLAY_ALPHA = 0.45
#: Characters per line of a cell's label in the overlay: a long class name wraps within its cell.
CELL_LABEL_CHARACTERS = 16
#: The figure's panels, named so a reader (or a test) can find them.
PANELS = ("photo", "class map", "overlay")
#: `text_map`'s keys: one character each while they last.
KEY_CHARACTERS = string.ascii_uppercase + string.ascii_lowercase + string.digits
#: The width assumed when standard output is no terminal and $COLUMNS is not set.
FALLBACK_COLUMNS = 80


def relabel(class_map: np.ndarray, most: int = MAX_LEGEND_CLASSES) -> tuple[np.ndarray, list[str]]:
    """Number the classes present 0..n-1 (the seed's ``np.unique(..., return_inverse=True)``).

    Beyond ``most`` classes, the ones covering the fewest positions are merged into a last "other" entry,
    because a colour bar of 50 names is unreadable and a palette that repeats colours is ambiguous.
    """
    present, inverse, counts = np.unique(class_map, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(class_map.shape)
    names = [labels.class_name(int(c)) for c in present]
    if len(present) <= most:
        return inverse, names
    keep = sorted(np.argsort(-counts, kind="stable")[:most])
    new_index = np.full(len(present), most)
    new_index[keep] = np.arange(most)
    other = len(present) - most
    return new_index[inverse], [names[i] for i in keep] + [f"other ({other} classes)"]


def class_colors(count: int, with_other: bool) -> list[tuple[float, float, float, float]]:
    """RGBA colours for ``count`` legend entries, the last one "other" when ``with_other``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    palette = [c for i, c in enumerate(colormaps[PALETTE].colors) if i != PALETTE_GREY]
    named = count - 1 if with_other else count
    if named > len(palette):
        raise ValueError(f"{named} classes need more colours than {PALETTE}'s {len(palette)}: relabel first")
    return [to_rgba(c) for c in palette[:named]] + ([to_rgba(OTHER_COLOR)] if with_other else [])


#: Edge colours of the detectors' boxes on the photo: faces, and objects.
FACE_EDGE = "#ffeb3b"
OBJECT_EDGE = "#00e5ff"


def build_figure(segmentation: Segmentation, title: str, boxes=(), photo_size=None) -> "Figure":
    """Three panels: the photo; its class map drawn with a discrete colormap and a colour bar naming each
    class (the seed's figure); the map over the photo, each position over the pixels it owns ("other" left
    clear), with the 3x3 cells the index stores and each cell's leading label and confidence. ``boxes``
    (`indexer.boxes.Box`: faces and objects, in pixels of a photo of ``photo_size = (width, height)``) are
    outlined on the photo with their label (`indexer.boxes.label`)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import patheffects
    from matplotlib import pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    relabeled, legend = relabel(segmentation.class_map)
    count = len(legend)
    with_other = legend[-1].startswith("other (")
    colors = class_colors(count, with_other)
    cmap = ListedColormap(colors)
    tints = [(r, g, b, OVERLAY_ALPHA) for r, g, b, _ in colors]
    over_photo = ListedColormap(tints[:-1] + [(0.0, 0.0, 0.0, 0.0)] if with_other else tints)
    norm = BoundaryNorm(np.arange(count + 1) - 0.5, count)
    figure, panels = plt.subplots(1, len(PANELS), figsize=FIGURE_INCHES)
    photo_axes, map_axes, overlay_axes = panels
    for axes, name in zip(panels, PANELS):
        axes.set_label(name)

    photo_axes.imshow(segmentation.pixels)
    if boxes:
        from matplotlib.patches import Rectangle

        height, width = segmentation.pixels.shape[:2]
        sx, sy = width / photo_size[0], height / photo_size[1]
        for box in boxes:
            edge = FACE_EDGE if is_face(box) else OBJECT_EDGE
            photo_axes.add_patch(Rectangle((box.left * sx - 0.5, box.top * sy - 0.5), box.width * sx,
                                           box.height * sy, fill=False, edgecolor=edge, linewidth=2))
            photo_axes.text(box.left * sx, box.top * sy - 4, box_label(box), color=edge, fontsize=9,
                            fontweight="bold")
    faces_found = sum(is_face(box) for box in boxes)
    counts = [f"{n} {word}{'s' * (n != 1)}" for n, word in ((faces_found, "face"), (len(boxes) - faces_found, "object"))
              if n]
    photo_axes.set_title(f"Photo (working size){''.join(', ' + c for c in counts)}")
    photo_axes.axis("off")

    drawn = map_axes.matshow(relabeled, cmap=cmap, norm=norm)
    map_axes.set_title(f"Class map {relabeled.shape[0]}x{relabeled.shape[1]}")
    colorbar = figure.colorbar(drawn, ax=map_axes, ticks=np.arange(count))
    colorbar.ax.set_yticklabels([f"{i} {name}" for i, name in enumerate(legend)])

    geometry = segmentation.geometry
    overlay_axes.imshow(segmentation.pixels)
    overlay_axes.pcolormesh(
        geometry.cols.tile_edges(), geometry.rows.tile_edges(), relabeled, cmap=over_photo, norm=norm
    )
    row_edges, col_edges = geometry.cell_edges()
    outlined = [patheffects.withStroke(linewidth=3, foreground="black")]
    for y in row_edges[1:-1]:
        overlay_axes.axhline(y, color="white", linewidth=1.5, path_effects=outlined)
    for x in col_edges[1:-1]:
        overlay_axes.axvline(x, color="white", linewidth=1.5, path_effects=outlined)
    for cell, leader in enumerate(segmentation.cells):
        row, col = divmod(cell, GRID)
        overlay_axes.text(
            (col_edges[col] + col_edges[col + 1]) / 2, (row_edges[row] + row_edges[row + 1]) / 2,
            f"{textwrap.fill(leader.name, CELL_LABEL_CHARACTERS)}\n{percent(leader.probability)}",
            ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
    overlay_axes.set_xlim(col_edges[0], col_edges[-1])
    overlay_axes.set_ylim(row_edges[-1], row_edges[0])
    overlay_axes.set_title("Over the photo: the 3x3 cells the index stores")
    overlay_axes.axis("off")
    figure.suptitle(title, fontsize=14, fontweight="bold")
    return figure


def save_figure(segmentation: Segmentation, out: Path, title: str, boxes=(), photo_size=None) -> None:
    """Write `build_figure` as a PNG."""
    from matplotlib import pyplot as plt

    figure = build_figure(segmentation, title, boxes, photo_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(figure)


def short_keys(count: int) -> list[str]:
    """``count`` distinct keys of equal width: one character while `KEY_CHARACTERS` last, then two."""
    if count <= len(KEY_CHARACTERS):
        return list(KEY_CHARACTERS[:count])
    return [a + b for a in KEY_CHARACTERS for b in KEY_CHARACTERS][:count]


def _packed(entries: list[str], width: int, gap: str = "  ") -> list[str]:
    """The entries on as few lines of ``width`` as fit, never split (one longer than ``width`` stands alone)."""
    lines: list[str] = []
    for entry in entries:
        if lines and len(lines[-1]) + len(gap) + len(entry) <= width:
            lines[-1] += gap + entry
        else:
            lines.append(entry)
    return lines


def text_map(segmentation: Segmentation, width: int | None = None) -> str:
    """The class map as rows of short keys, then a legend naming each key's class, all within ``width``
    columns (default: the terminal's, else `FALLBACK_COLUMNS`).

    Keys go to the classes by the positions they cover, most first. A map wider than ``width`` even with
    no space between keys is cut into bands of columns, one after the other.
    """
    width = max(1, width or shutil.get_terminal_size((FALLBACK_COLUMNS, 24)).columns)
    class_map = segmentation.class_map
    present, inverse, counts = np.unique(class_map, return_inverse=True, return_counts=True)
    order = np.lexsort((present, -counts))
    keys = short_keys(len(present))
    key_of = np.empty(len(present), dtype=object)
    key_of[order] = keys
    grid = key_of[inverse.reshape(class_map.shape)]
    key_width = len(keys[0])
    columns = class_map.shape[1]
    gap = " " if columns * (key_width + 1) - 1 <= width else ""
    per_band = max(1, (width + len(gap)) // (key_width + len(gap)))
    blocks = []
    for start in range(0, columns, per_band):
        stop = min(columns, start + per_band)
        heading = [] if per_band >= columns else [f"columns {start + 1}-{stop}:"[:width]]
        blocks.append("\n".join(heading + [gap.join(row[start:stop]) for row in grid]))
    legend = _packed([f"{keys[i]}={labels.class_name(int(present[c]))}" for i, c in enumerate(order)], width)
    return "\n\n".join(blocks + ["\n".join(legend)])
