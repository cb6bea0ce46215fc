"""The whole-image expert (model code: :mod:`aligngemini_sdk.export.wholeimage`): the whole image resized to
224 x 224, ImageNet mean/std; exported as a bundle's semantic branch (``--branch semantic``)."""

from __future__ import annotations

from typing import Any

from aligngemini_sdk.export.archs import PixelArch, need_weights, register
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec

SIDE = 224  # the same number as aligngemini_sdk.export.wholeimage.SIDE, which needs torch to import


def _load(cfg: Any) -> Any:
    from aligngemini_sdk.export.wholeimage import load_wholeimage

    return load_wholeimage(need_weights(cfg))


register(PixelArch(
    name="wholeimage", help="whole-image EfficientNet-Lite0 + linear head (a semantic branch without a VLM)",
    default_input=InputSpec(height=SIDE, width=SIDE, crop="none", resize="exact", mean=IMAGENET_MEAN,
                            std=IMAGENET_STD),
    load=_load))
