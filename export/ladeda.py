"""Tiny-LaDeDa (Cavia et al., "Real-Time Deepfake Detection in the Real-World", 2024): a ~1.3k-parameter
patch-level pixel detector. One file, timm-style: the architecture, its fixed preprocessing, and a loader
for the authors' state dicts.

The checkpoint does not record which fixed preprocessing it was trained with (raw, NPR residual, or a
directional 3x3 gradient); ``preprocess`` selects it. The fixed filter is part of the exported graph, so
a bundle needs no knowledge of it.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from aligngemini_sdk.export.checkpoint import load_tensors

PREPROCESS = ("raw", "npr", "grad_x", "grad_y", "grad_diag", "grad_antidiag")


def _kernel(kind: str) -> torch.Tensor:
    k = {
        "grad_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
        "grad_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
        "grad_diag": [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]],
        "grad_antidiag": [[2, 1, 0], [1, 0, -1], [0, -1, -2]],
    }[kind]
    return torch.tensor(k, dtype=torch.float32).view(1, 1, 3, 3).repeat(3, 1, 1, 1)


class TinyLaDeDa(nn.Module):
    def __init__(self, preprocess: str = "grad_diag") -> None:
        super().__init__()
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}")
        self.preprocess = preprocess
        if preprocess.startswith("grad"):
            self.register_buffer("kernel", _kernel(preprocess), persistent=False)
        self.conv1 = nn.Conv2d(3, 8, 1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(_Bottleneck())
        self.fc = nn.Linear(8, 1)

    def _fixed(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess == "raw":
            return x
        if self.preprocess == "npr":
            down = F.interpolate(x, scale_factor=0.5, mode="nearest")
            return x - F.interpolate(down, size=x.shape[-2:], mode="nearest")
        return F.conv2d(x, self.kernel, padding=1, groups=3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._fixed(x)
        x = F.relu(self.bn1(self.conv2(self.conv1(x))))
        return self.layer1(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).mean(dim=(2, 3))
        return self.fc(f)  # (N, 1) fake logit


class _Bottleneck(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, bias=False)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


def load_ladeda(weights: str | os.PathLike[str], preprocess: str = "grad_diag") -> TinyLaDeDa:
    """Load an authors' state dict (tensors only: ``weights_only=True``, mapped to CPU)."""
    sd = load_tensors(weights)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = TinyLaDeDa(preprocess)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "kernel"]
    if missing or unexpected:
        from aligngemini_sdk.errors import ExportError

        raise ExportError(f"{weights}: not a Tiny-LaDeDa state dict (missing {missing}, unexpected {unexpected})")
    return model.eval()
