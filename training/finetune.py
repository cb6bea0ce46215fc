"""Rounds 8-9 of training/WILD_VALIDATION.md: adapt the last layers of a view's frozen EfficientNet-Lite0 by fine-tuning
them on cached activations, then hand the adapted pooled features back to the probe recipe (train_semantic.py).

The activations entering block ``CACHED`` (the stride-32 stage) are computed once per image, view and version
(``stage_input``); fine-tuning (``fine_tune``) runs only the blocks from there on: ~12 s for the last block and ~1 min
for the whole stage, per view and fold on 2 cores. ``adapted_features`` gives the probe recipe its features back,
``graft`` the network to export. BatchNorm running statistics stay the pretrained ones. Nothing here reads a file a
user gives: the caches are written and read by this recipe only (``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aligngemini_sdk.export.calibrate import class_balanced
from aligngemini_sdk.export.wholeimage import ALL_TAPS, BLOCK_CHANNELS, WholeImageExpert

#: the block whose input is cached: the first of the stride-32 stage (112 x 14 x 14 at 224)
CACHED = 11
EPOCHS, BATCH, LR, SEED = 4, 32, 1e-4, 0  # fixed in WILD_VALIDATION.md before round 8 ran


def adapted_columns(first: int) -> slice:
    """Where the features of blocks ``first``.. and the head sit in a feature vector pooled at every block."""
    return slice(2 * sum(BLOCK_CHANNELS[:first]), None)


class Tail(nn.Module):
    """A copy of Lite0 from block ``first`` on: those blocks, the head convolution and its BatchNorm, pooled as
    ``WholeImageExpert.features`` pools (per block mean and standard deviation, then the head's mean)."""

    def __init__(self, model: WholeImageExpert, first: int) -> None:
        super().__init__()
        net = model.net
        self.blocks = nn.ModuleList(copy.deepcopy(list(net._blocks[first:])))
        self.conv_head, self.bn1 = copy.deepcopy(net._conv_head), copy.deepcopy(net._bn1)
        self.swish = net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for block in self.blocks:
            x = block(x)
            m = x.mean(dim=(2, 3))
            pooled += [m, torch.sqrt(torch.clamp((x * x).mean(dim=(2, 3)) - m * m, min=1e-6))]
        x = self.swish(self.bn1(self.conv_head(x)))
        return torch.cat([*pooled, x.mean(dim=(2, 3))], dim=1)


def backbone() -> WholeImageExpert:
    torch.set_num_threads(2)
    return WholeImageExpert(pretrained=True, taps=()).eval()


def stage_input(model: WholeImageExpert, x: torch.Tensor) -> torch.Tensor:
    """The activation entering block CACHED for preprocessed images ``x``."""
    net = model.net
    x = net._swish(net._bn0(net._conv_stem(x)))
    for block in net._blocks[:CACHED]:
        x = block(x)
    return x


def advance(model: WholeImageExpert, x: np.ndarray, first: int) -> np.ndarray:
    """Cached block-CACHED inputs ``(n, C, H, W)`` run through the frozen blocks CACHED..first-1."""
    out = []
    with torch.no_grad():
        for s in range(0, len(x), 256):
            h = torch.from_numpy(x[s:s + 256])
            for block in model.net._blocks[CACHED:first]:
                h = block(h)
            out.append(h.numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class StartHead:
    """The logistic head fine-tuning starts from (standardised features: ``mu``, ``sd``)."""

    w: np.ndarray
    b: float
    mu: np.ndarray
    sd: np.ndarray


def fine_tune(model: WholeImageExpert, acts: np.ndarray, feats: np.ndarray, y: np.ndarray, fit_idx: np.ndarray,
              sample_weight: np.ndarray, start: StartHead, first: int, l2: float, label: str) -> Tail:
    """A copy of ``model``'s blocks ``first``.. and head convolution, fine-tuned on the images ``fit_idx`` (all their
    versions); ``model`` is not changed.

    ``acts``: (N, V, C, H, W) inputs of block ``first`` (already advanced); ``feats``: (N, V, F) features pooled at
    every block by the frozen network; ``sample_weight``: per image of ``fit_idx`` (repository balance)."""
    cols = adapted_columns(first)
    tail = Tail(model, first).eval()  # eval: BatchNorm keeps its pretrained statistics
    n_v = acts.shape[1]
    a = torch.from_numpy(acts[fit_idx].reshape(-1, *acts.shape[2:]))
    fixed = torch.from_numpy(feats[fit_idx].reshape(-1, feats.shape[2])[:, :cols.start].astype(np.float32))
    ys = np.repeat(y[fit_idx], n_v)
    cw = torch.from_numpy(class_balanced(ys, np.repeat(sample_weight, n_v)).astype(np.float32))
    yt = torch.from_numpy(ys.astype(np.float32))
    mu, sd = (torch.from_numpy(v.astype(np.float32)) for v in (start.mu, start.sd))
    w = nn.Parameter(torch.from_numpy(start.w.astype(np.float32)))
    b = nn.Parameter(torch.tensor([start.b], dtype=torch.float32))
    opt = torch.optim.Adam([*tail.parameters(), w, b], lr=LR)  # BatchNorm statistics are buffers: kept
    gen, n, t0 = torch.Generator().manual_seed(SEED), len(ys), time.time()
    for epoch in range(EPOCHS):
        for batch in torch.randperm(n, generator=gen).split(BATCH):
            z = ((torch.cat([fixed[batch], tail(a[batch])], dim=1) - mu) / sd) @ w + b
            bce = nn.functional.binary_cross_entropy_with_logits(z, yt[batch], reduction="none")
            loss = (n / len(batch)) * (cw[batch] * bce).sum() + 0.5 * l2 * (w * w).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"\r[{label}] epoch {epoch + 1}/{EPOCHS} ({time.time() - t0:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    return tail


def adapted_features(tail: Tail, acts: np.ndarray, feats: np.ndarray, first: int) -> np.ndarray:
    """Every image's features ``feats`` (N, V, F) with the columns of blocks ``first``.. recomputed by ``tail``."""
    out = feats.copy()
    flat = acts.reshape(-1, *acts.shape[2:])
    with torch.no_grad():
        new = np.concatenate([tail(torch.from_numpy(flat[s:s + 256])).numpy() for s in range(0, len(flat), 256)])
    out[:, :, adapted_columns(first)] = new.reshape(*acts.shape[:2], -1)
    return out


def graft(model: WholeImageExpert, tail: Tail, first: int) -> WholeImageExpert:
    """A network pooled at every block: ``model``'s backbone with blocks ``first``.. and the head convolution taken
    from ``tail`` (what the branch exports; its linear head is set afterwards)."""
    out = WholeImageExpert(pretrained=False, taps=ALL_TAPS)
    out.net.load_state_dict(model.net.state_dict())
    for i, block in enumerate(tail.blocks):
        out.net._blocks[first + i].load_state_dict(block.state_dict())
    out.net._conv_head.load_state_dict(tail.conv_head.state_dict())
    out.net._bn1.load_state_dict(tail.bn1.state_dict())
    return out.eval()
