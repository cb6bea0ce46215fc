"""The whole-image expert (model code: :mod:`aligngemini_sdk.export.wholeimage`): the whole image resized to
224 x 224, ImageNet mean/std; the default's semantic branch (``--branch semantic``). The same network with a
``--crop center --resize none`` input is the default's pixel branch."""

from __future__ import annotations

from aligngemini_sdk.export.archs import PixelArch, register, state_dict_loader
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec

SIDE = 224  # the same number as aligngemini_sdk.export.wholeimage.SIDE, which needs torch to import

register(PixelArch(
    name="wholeimage", help="EfficientNet-Lite0 + linear head on pooled features of four depths, from its state dict",
    default_input=InputSpec(height=SIDE, width=SIDE, crop="none", resize="exact", mean=IMAGENET_MEAN,
                            std=IMAGENET_STD),
    load=state_dict_loader("aligngemini_sdk.export.wholeimage", "load_wholeimage")))
