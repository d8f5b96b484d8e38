"""The photos int8 models are calibrated on, and which calibration is current per network and working size.

Post-training quantization measures each layer's range on real photos, seen as the indexer sees them: at
the working shape and at every view of `indexer.inference.views`. A calibration is a set of photos named
by an id over their contents:

- ``shipped-DIGEST``: the package's own (``indexer/data/int8_calibration``: crops of freely licensed photos,
  written by ``bench/int8_calibration_set.py``), used until the user calibrates;
- ``photos-DIGEST``: up to `MAX_PHOTOS` of a user's photos (``imgidx runtime calibrate FOLDER``), which
  then become the current calibration for that network and working size (`activate`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from indexer import images
from indexer.errors import ImageReadError, QuantizedModelError
from indexer.geometry import Layer, total_stride
from indexer.inference import view_inputs
from indexer.runtime import cache

SHIPPED_FOLDER = "int8_calibration"
SHIPPED, PHOTOS = "shipped", "photos"
#: A user's photos beyond this many add little to the ranges and cost minutes for VGG-16.
MAX_PHOTOS = 64
#: Fewer photos than this give ranges too narrow for the photos to come.
MIN_PHOTOS = 8
ID_DIGEST_CHARS = 12
ACTIVE_FILE = "calibrations.json"


@dataclass(frozen=True)
class PhotoSet:
    """Photo files to calibrate on, and the calibration id their contents give."""

    id: str
    paths: tuple[str, ...]


def _set_id(kind: str, contents: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for item in sorted(hashlib.sha256(content).digest() for content in contents):
        digest.update(item)
    return f"{kind}-{digest.hexdigest()[:ID_DIGEST_CHARS]}"


@lru_cache(maxsize=1)
def shipped() -> PhotoSet:
    folder = resources.files("indexer") / "data" / SHIPPED_FOLDER
    paths = sorted(str(p) for p in folder.iterdir() if p.name.endswith(".jpg"))
    return PhotoSet(_set_id(SHIPPED, [Path(p).read_bytes() for p in paths]), tuple(paths))


def from_folder(folder: str | os.PathLike[str], limit: int = MAX_PHOTOS) -> PhotoSet:
    """Up to ``limit`` photos under ``folder``, spread evenly over its files in name order."""
    from indexer.walk import walk

    found = [f.path for f in walk([os.path.realpath(folder)]).files]
    if len(found) < MIN_PHOTOS:
        raise QuantizedModelError(
            f"{folder}: {len(found)} photos found; calibrating int8 needs at least {MIN_PHOTOS}"
        )
    return from_paths(spread(found, limit))


def spread(paths: Sequence[str], limit: int) -> list[str]:
    """At most ``limit`` of ``paths``, evenly spaced, so a few photos still cover every folder."""
    count = min(limit, len(paths))
    return [paths[int(i * len(paths) / count)] for i in range(count)]


def from_paths(paths: Sequence[str]) -> PhotoSet:
    return PhotoSet(_set_id(PHOTOS, [images.read_file(p) for p in paths]), tuple(paths))


def samples(photo_set: PhotoSet, layers: Sequence[Layer], size: int) -> Iterator[np.ndarray]:
    """Single-image batches as the network gets them when indexing: each photo at its working shape for
    ``size``, and at each coarser view. A photo that cannot be read is left out."""
    stride = total_stride(layers)
    for path in photo_set.paths:
        try:
            decoded = images.load(path, min_side=size)
        except ImageReadError:
            continue
        shape = images.working_shape(decoded.height, decoded.width, size, stride)
        for pixels, _ in view_inputs(layers, images.resize(decoded.pixels, shape)[None]):
            yield pixels


def _key(model: str, size: int) -> str:
    return f"{model}@{size}"


def active(model: str, size: int) -> str:
    """The calibration int8 models of ``model`` at ``size`` use now: the user's last, else the shipped set."""
    return cache.read_json(cache.root() / ACTIVE_FILE).get(_key(model, size)) or shipped().id


def activate(model: str, size: int, calibration: str) -> None:
    path = cache.root() / ACTIVE_FILE
    record = cache.read_json(path)
    record[_key(model, size)] = calibration
    cache.write_json(path, record)
