"""Ground truth for the end-to-end query tests: deterministic sets of composites (`composites.py`), what
each query label means in terms of the photos, and a reference evaluator over the placements.

Shared by `tests/test_query_e2e.py` and `bench/query_accuracy.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from composites import composite, save_jpeg

PHOTOS = ("chelsea", "coffee", "motorcycle", "rocket")


@dataclass(frozen=True)
class Sample:
    """One composite: its file stem and which photo fills which cell (0 top-left .. 8 bottom-right)."""

    name: str
    placements: tuple[tuple[int, str], ...]  # (cell, photo), by cell

    @property
    def cells(self) -> dict[int, str]:
        return dict(self.placements)

    @property
    def filename(self) -> str:
        return f"{self.name}.jpg"


def _sample(index: int, placements: dict[int, str]) -> Sample:
    ordered = tuple(sorted(placements.items()))
    parts = [f"{photo}{cell}" for cell, photo in ordered] or ["empty"]
    return Sample(f"{index:03}-{'-'.join(parts)}", ordered)


def composite_set(n: int, seed: int = 0, empty: int = 3, pairs: int = 8) -> list[Sample]:
    """``n`` composites: ``empty`` with nothing, ``pairs`` with two different photos in two cells, the rest
    with 1-3 different photos in random cells; all drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    layouts: list[dict[int, str]] = [{} for _ in range(empty)]
    for _ in range(pairs):
        photos = rng.choice(PHOTOS, 2, replace=False)
        cells = rng.choice(9, 2, replace=False)
        layouts.append({int(c): str(p) for c, p in zip(cells, photos)})
    while len(layouts) < n:
        k = int(rng.integers(1, 4))
        photos = rng.choice(PHOTOS, k, replace=False)
        cells = rng.choice(9, k, replace=False)
        layouts.append({int(c): str(p) for c, p in zip(cells, photos)})
    order = rng.permutation(len(layouts))
    return [_sample(i, layouts[j]) for i, j in enumerate(order)]


def write_set(folder: Path, samples: list[Sample], truth: Path | None = None) -> None:
    """The composites as JPEGs in ``folder``; with ``truth``, their placements as JSON there too."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        save_jpeg(composite(s.cells), folder / s.filename)
    if truth is not None:
        truth.write_text(json.dumps({s.filename: {str(c): p for c, p in s.placements} for s in samples}, indent=1))
