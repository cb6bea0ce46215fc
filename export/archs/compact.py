"""The compact expert the default bundle shipped until 2026-12-01 (model code: :mod:`aligngemini_sdk.export.compact`):
a 224 centre crop, no resize, ImageNet mean/std; weights are the state dict ``training/train_default.py`` saves."""

from __future__ import annotations

from aligngemini_sdk.export.archs import PixelArch, register, state_dict_loader
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec

#: 224 (aligngemini_sdk.export.compact.CROP, which needs torch to import) centre crop, never resampled
INPUT = InputSpec(height=224, width=224, crop="center", resize="none", mean=IMAGENET_MEAN, std=IMAGENET_STD)

register(PixelArch(name="compact", default_input=INPUT, load=state_dict_loader("aligngemini_sdk.export.compact",
                                                                              "load_compact"),
                   help="the previous default's compact expert (EfficientNet-Lite0 truncated) from its state dict"))
