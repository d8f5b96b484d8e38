"""The seed's segmentation figure (its ``discrete_matshow``) and a plain-text rendering of a class map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer import labels
from indexer.inference import Segmentation

COLORMAP = "Paired"
#: Paired has 12 distinct colours; rarer classes share one "other" colour so every colour means one class.
MAX_LEGEND_CLASSES = 11
OTHER_RGBA = (0.85, 0.85, 0.85, 1.0)
FIGURE_INCHES = (13, 6)
FIGURE_DPI = 100
TEXT_CELL_WIDTH = 14


def relabel(class_map: np.ndarray, most: int = MAX_LEGEND_CLASSES) -> tuple[np.ndarray, list[str]]:
    """Number the classes present 0..n-1 (the seed's ``np.unique(..., return_inverse=True)``).

    Beyond ``most`` classes, the ones covering the fewest positions are merged into a last "other" entry,
    because a colour bar of 50 names is unreadable and a 12-colour map would repeat colours.
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


FACE_EDGE = "#ffeb3b"


def save_figure(segmentation: Segmentation, out: Path, title: str, faces=(), photo_size=None) -> None:
    """The photo beside its class map, drawn with a discrete colormap and a colour bar naming each class;
    ``faces`` (boxes ``(x0, y0, x1, y1, confidence)`` in pixels of a photo of ``photo_size = (width,
    height)``) are outlined on the photo with their confidence."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    relabeled, legend = relabel(segmentation.class_map)
    count = len(legend)
    figure, (photo_axes, map_axes) = plt.subplots(1, 2, figsize=FIGURE_INCHES)
    photo_axes.imshow(segmentation.pixels)
    if faces:
        from matplotlib.patches import Rectangle

        height, width = segmentation.pixels.shape[:2]
        sx, sy = width / photo_size[0], height / photo_size[1]
        for x0, y0, x1, y1, confidence in faces:
            photo_axes.add_patch(Rectangle((x0 * sx - 0.5, y0 * sy - 0.5), (x1 - x0) * sx, (y1 - y0) * sy,
                                           fill=False, edgecolor=FACE_EDGE, linewidth=2))
            photo_axes.text(x0 * sx, y0 * sy - 4, f"face {confidence:.0%}", color=FACE_EDGE, fontsize=9,
                            fontweight="bold")
    faces_note = f", {len(faces)} face{'s' * (len(faces) != 1)}" if faces else ""
    photo_axes.set_title(f"Photo (working size){faces_note}")
    photo_axes.axis("off")
    cmap = plt.get_cmap(COLORMAP, count)
    if legend[-1].startswith("other ("):
        from matplotlib.colors import ListedColormap

        cmap = ListedColormap([cmap(i) for i in range(count - 1)] + [OTHER_RGBA])
    drawn = map_axes.matshow(relabeled, cmap=cmap, vmin=-0.5, vmax=count - 0.5)
    map_axes.set_title(f"Class map {relabeled.shape[0]}x{relabeled.shape[1]}")
    colorbar = figure.colorbar(drawn, ax=map_axes, ticks=np.arange(count))
    colorbar.ax.set_yticklabels([f"{i} {name}" for i, name in enumerate(legend)])
    figure.suptitle(title, fontsize=14, fontweight="bold")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(figure)


def text_grid(segmentation: Segmentation, width: int = TEXT_CELL_WIDTH) -> str:
    """The class map as rows of class names, each cut to ``width`` characters."""
    lines = []
    for row in segmentation.class_map:
        cells = [labels.class_name(int(c))[:width].ljust(width) for c in row]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)
