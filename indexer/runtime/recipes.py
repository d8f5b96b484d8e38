"""NNCF int8 recipes: which settings quantize each network, and the id an index records for its int8 model.

Kept apart from `indexer.runtime.openvino_model` (which imports OpenVINO) because choosing an index's
settings needs the recipe's tag: an index records its int8 model as ``CALIBRATION-TAG``, the calibration
photos' id and the recipe's, so a later imgidx with another recipe never mixes the two in one index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openvino as ov


@dataclass(frozen=True)
class Recipe:
    """NNCF post-training settings. ``ignored_types``: OpenVINO op types left in floating point;
    ``channel_alignment``: NNCF's cross-layer equalisation of conv ranges; ``activation_ranges``: a
    `nncf.quantization.range_estimator.RangeEstimatorParametersSet` name (empty: NNCF's default);
    ``float_first_layer``: the first convolution (on the pixels) left in floating point;
    ``float_last_layers``: the last N convolutions / matrix products (the head, whose logits the scores are
    built from) left in floating point."""

    preset: str = "performance"
    fast_bias_correction: bool = True
    ignored_types: tuple[str, ...] = ()
    channel_alignment: bool = False
    activation_ranges: str = ""
    float_first_layer: bool = False
    float_last_layers: int = 0

    @property
    def tag(self) -> str:
        """Short and stable, in the cache key: a changed recipe builds a new model. Only the settings that
        differ from the defaults count, so a new setting leaves the existing tags as they were."""
        changed = {k: v for k, v in asdict(self).items() if v != getattr(Recipe, k)}
        return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]

    def nncf_arguments(self, model: ov.Model) -> dict:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced = {"disable_channel_alignment": not self.channel_alignment}
        if self.activation_ranges:
            advanced["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet,
                                                                     self.activation_ranges)
        names = [_first_convolution(model)] if self.float_first_layer else []
        names += _last_products(model, self.float_last_layers)
        ignored = nncf.IgnoredScope(names=names, types=list(self.ignored_types)) if names or self.ignored_types else None
        return {
            "preset": nncf.QuantizationPreset(self.preset),
            "fast_bias_correction": self.fast_bias_correction,
            "ignored_scope": ignored,
            "advanced_parameters": AdvancedQuantizationParameters(**advanced),
        }


def _first_convolution(model: ov.Model) -> str:
    return next(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")


#: The dense products a network's head is made of: 1x1 convolutions, or matrix products.
HEAD_PRODUCTS = ("Convolution", "MatMul")


def _last_products(model: ov.Model, count: int) -> list[str]:
    """The names of the last ``count`` convolutions / matrix products, in execution order."""
    products = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in HEAD_PRODUCTS]
    return products[len(products) - count:] if count else []


#: Per network, the recipe chosen on held-out agreement with fp32 (bench/int8_accuracy.py), retrieval F1
#: (bench/retrieval_quality.py) and speed (bench/model_throughput.py). Lite0: its depthwise convolutions
#: and its first layer lose most in int8 (on held-out dev photos NNCF's default keeps the top class at 67%
#: of map positions, this 85.6%, bf16 89%). The MIXED preset (asymmetric activation ranges) costs no
#: speed and gained a little (85.2% -> 85.6%; retrieval image F1 0.542 -> 0.550, bf16 0.560: two photo
#: decisions). The head left in float too bought no more and ran ~7% slower.
INT8_RECIPES: dict[str, Recipe] = {
    "vgg16": Recipe(),
    "efficientnet-lite0": Recipe(preset="mixed", float_first_layer=True, ignored_types=("GroupConvolution",)),
}


def quantization_id(model: str, calibration: str) -> str:
    """What an index records for ``model``'s int8 model calibrated on ``calibration`` with today's recipe."""
    return f"{calibration}-{recipe_of(model).tag}"


def split_quantization(quantization: str) -> tuple[str, str]:
    """``(calibration, recipe tag)`` of a `quantization_id`."""
    calibration, _, tag = quantization.rpartition("-")
    return calibration, tag


def recipe_of(model: str) -> Recipe:
    """``model``'s recipe; NNCF's defaults for a network without one of its own."""
    return INT8_RECIPES.get(model, Recipe())
