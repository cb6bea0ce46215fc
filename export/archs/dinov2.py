"""DINOv2 experts (model code: :mod:`aligngemini_sdk.export.dinov2`): the paper's pixel expert takes a 336 centre
crop, no resize, CLIP mean/std. ``dinov2``: a Hugging Face DINOv2 directory with a one-logit head; ``dda``: a
DDA/AlignGemini checkpoint (LoRA merged)."""

from __future__ import annotations

from typing import Any

from aligngemini_sdk.export.archs import PixelArch, need_weights, register
from aligngemini_sdk.manifest import CLIP_MEAN, CLIP_STD, InputSpec

PAPER_INPUT = InputSpec(height=336, width=336, crop="center", resize="none", mean=CLIP_MEAN, std=CLIP_STD)


def _load_dir(cfg: Any) -> Any:
    from aligngemini_sdk.export.dinov2 import load_dinov2_dir

    return load_dinov2_dir(need_weights(cfg))


def _load_dda(cfg: Any) -> Any:
    from aligngemini_sdk.export.dinov2 import load_dda

    return load_dda(need_weights(cfg), lora_alpha=cfg.lora_alpha)


register(PixelArch(name="dinov2", help="DINOv2 (HF directory) + Linear head", default_input=PAPER_INPUT,
                   load=_load_dir))
register(PixelArch(name="dda", help="DDA / AlignGemini checkpoint: DINOv2 + LoRA (merged) + head",
                   default_input=PAPER_INPUT, load=_load_dda))
