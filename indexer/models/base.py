"""The interface every backbone offers to the indexer and the CLI."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from indexer.geometry import Geometry, Layer
from indexer.models import PRECISIONS



class Backbone(Protocol):
    """A fully-convolutional ImageNet classifier, loaded once, run on batches of any count.

    ``class_map`` takes RGB ``uint8`` images of one shape ``(N, H, W, 3)`` (the backbone applies its own
    normalisation) and returns the class logits at every map position, ``(N, h, w, 1000)`` ``float32``,
    indexed like ``indexer.labels`` (no background class). ``geometry`` places those positions in the
    input. The mean of the map over ``h, w`` is the network's image-level logits.
    """

    name: str
    precision: str
    layers: Sequence[Layer]

    def class_map(self, images: np.ndarray) -> np.ndarray: ...

    def geometry(self, input_hw: tuple[int, int]) -> Geometry: ...


def cpu_has_bf16() -> bool:
    """True when the CPU runs bf16 matrix maths natively (AVX512-BF16 or AMX), so bf16 is a speed-up."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_precision(precision: str) -> str:
    """``auto`` becomes ``bf16`` where the CPU supports it and ``fp32`` elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision
