"""Tiny-LaDeDa (model code: :mod:`aligngemini_sdk.export.ladeda`): the authors' evaluation takes the full image
(no crop, no resize; long side capped at 1024) with ImageNet normalisation."""

from __future__ import annotations

from typing import Any

from aligngemini_sdk.export.archs import PixelArch, need_weights, register
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec


def _load(cfg: Any) -> Any:
    from aligngemini_sdk.export.ladeda import load_ladeda

    return load_ladeda(need_weights(cfg), cfg.ladeda_preprocess)


register(PixelArch(
    name="ladeda", help="Tiny-LaDeDa state dict (--ladeda-preprocess selects its fixed filter)",
    default_input=InputSpec(height=0, width=0, crop="none", resize="none", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            max_side=1024),
    load=_load, provenance=lambda cfg: {"ladeda_preprocess": cfg.ladeda_preprocess}))
