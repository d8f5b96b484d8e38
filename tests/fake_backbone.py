"""A tiny stand-in for a real backbone: real geometry, logits that follow the colours in the image.

Each 32x32 block of the input becomes one map position (a 32x32 VALID convolution with stride 32, so the
receptive-field centres are exactly the block centres). Its logits favour the class whose prototype colour
is nearest the block's mean colour, so a test can paint a colour into a cell and expect that class there.
"""

from __future__ import annotations

import os
import time

import numpy as np

from indexer.geometry import Layer, derive_geometry

BLOCK = 32
#: Prototype colour -> an arbitrary, distinct ImageNet class (fire engine, green snake, swimming trunks, ...).
PALETTE = {
    (255, 0, 0): 555,
    (0, 255, 0): 55,
    (0, 0, 255): 842,
    (128, 128, 128): 825,
    (255, 255, 255): 916,
    (0, 0, 0): 335,
}
SHARPNESS = 0.0003
#: Grey is the pictures' background: like a real network's on a plain wall, its class is weakly held, so
#: a painted cell still leads the logits pooled over its window (`indexer.regions`).
BACKGROUND_CLASS, BACKGROUND_OFFSET = 825, -3.0
#: Seconds between looks at a held model's gate file.
HOLD_POLL_S = 0.01
#: Every class outside the palette, far below any palette class.
FLOOR_LOGIT = -1e4


class FakeBackbone:
    """Implements `indexer.models.base.Backbone`; counts calls and can be made slow or failing."""

    name = "fake"
    precision = "fp32"
    layers = (Layer(BLOCK, BLOCK, "VALID"),)

    def __init__(self, delay: float = 0.0, fail_after: int | None = None, hold_after: int | None = None,
                 gate: str | None = None, held: str | None = None):
        """``hold_after`` images (views) in, the model waits until the file ``gate`` exists, forever without
        one, having made the file ``held`` if given: a run a test stops (kill -9, Ctrl-C, another writer) is
        still running then, and runs meant to overlap do, however slowly the machine lets the test get
        there, so the test asserts what happens and not a race against the clock."""
        self.delay = delay
        self.fail_after = fail_after
        self.hold_after = hold_after
        self.gate = gate
        self.held = held
        self.calls = 0
        self.images = 0

    def class_map(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[-1] == 3
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("fake model failure")
        if self.hold_after is not None and self.images + len(batch) > self.hold_after:
            if self.held is not None:
                open(self.held, "a").close()
            while self.gate is None or not os.path.exists(self.gate):
                time.sleep(HOLD_POLL_S)
            self.hold_after = None
        self.calls += 1
        self.images += len(batch)
        if self.delay:
            time.sleep(self.delay)
        n, height, width, _ = batch.shape
        h, w = height // BLOCK, width // BLOCK
        blocks = batch[:, : h * BLOCK, : w * BLOCK].astype(np.float32)
        means = blocks.reshape(n, h, BLOCK, w, BLOCK, 3).mean(axis=(2, 4))
        logits = np.full((n, h, w, 1000), FLOOR_LOGIT, dtype=np.float32)
        for colour, class_id in PALETTE.items():
            distance = ((means - np.array(colour, dtype=np.float32)) ** 2).sum(axis=-1)
            logits[..., class_id] = -SHARPNESS * distance + (BACKGROUND_OFFSET if class_id == BACKGROUND_CLASS else 0.0)
        return logits

    def geometry(self, input_hw):
        return derive_geometry(self.layers, input_hw)
