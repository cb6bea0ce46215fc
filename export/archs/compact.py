"""The compact expert the default bundle ships (model code: :mod:`aligngemini_sdk.export.compact`): a 224 centre
crop, no resize, ImageNet mean/std; weights are the state dict ``training/train_default.py`` saves."""

from __future__ import annotations

from typing import Any

from aligngemini_sdk.export.archs import PixelArch, need_weights, register
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec

CROP = 224  # the same number as aligngemini_sdk.export.compact.CROP, which needs torch to import


def _load(cfg: Any) -> Any:
    from aligngemini_sdk.export.compact import load_compact

    return load_compact(need_weights(cfg))


register(PixelArch(
    name="compact", help="the default's compact expert (EfficientNet-Lite0 truncated) from its state dict",
    default_input=InputSpec(height=CROP, width=CROP, crop="center", resize="none", mean=IMAGENET_MEAN,
                            std=IMAGENET_STD),
    load=_load))
