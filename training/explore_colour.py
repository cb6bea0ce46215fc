"""Exploration for issue 16, development repositories only: do an image's tone and colour statistics tell modern
generators from photos, beside G's ImageNet features?

    python -m training.explore_colour --work runs/semantic

Generated images are often described as having a look of their own: saturated colour, tone curves without clipped
shadows or highlights, smooth gradients. Those are global statistics that an ImageNet backbone, trained to name
objects under any colour or exposure, is meant to ignore. Every earlier round and exploration read such a backbone
(or forensic residuals); none read the tones directly. Here, per view (the whole image at 224, the native 224 centre
crop) and version (as served, and G's web version), COLOUR_FEATURES statistics of the view's RGB pixels:
per-channel mean, standard deviation, skewness and kurtosis (12); a histogram of saturation (16 bins) and of value
(16, HSV); a histogram of hue weighted by saturation (12); Hasler and Suesstrunk's colourfulness (1); the fraction of
near-black and near-white values per channel (6); the luminance Laplacian's variance and mean gradient magnitude (2).
- **K1**: G's features plus the statistics of both views;
- **K2**: G's features plus the whole view's statistics (the crop view as G's);
- **K0**: the statistics alone as both views (whether there is any signal at all; cheap if it were enough).

Rule, written before it ran (2026-12-03, session 18): "worth building" iff K1, K2 or K0 beats G (reproduced here) by
>= 3 points of repository-weighted balanced accuracy at fpr5 with a mean real-repository FPR <= 10 %, under
train_semantic.py's leave-one-repository-out protocol (10 development repositories; the final-test repositories are
not read). Building it would add a few dozen arithmetic operations per pixel to the whole-image graph: no latency
concern.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD
from training.exploration import cached_views, compare, start, with_views

COLOUR_FEATURES = 65
_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def rgb01(x: torch.Tensor) -> torch.Tensor:
    """The view's pixels in [0, 1] from the ImageNet-normalised tensor the backbone reads."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)


def _histogram(v: torch.Tensor, bins: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(B, bins): the share of pixels (or of ``weight``) per equal-width bin of values in [0, 1]."""
    idx = (v.flatten(1) * bins).long().clamp(0, bins - 1)
    w = torch.ones_like(v.flatten(1)) if weight is None else weight.flatten(1)
    h = torch.zeros(v.shape[0], bins).scatter_add_(1, idx, w)
    return h / h.sum(1, keepdim=True).clamp(min=1e-6)


def _moments(rgb: torch.Tensor) -> torch.Tensor:
    flat = rgb.flatten(2)
    mean, std = flat.mean(2), flat.std(2).clamp(min=1e-4)
    z = (flat - mean[..., None]) / std[..., None]
    return torch.cat([mean, std, (z ** 3).mean(2), (z ** 4).mean(2)], 1)


def _hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in [0, 1), saturation, value (B, H, W each)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v, lo = rgb.max(1).values, rgb.min(1).values
    delta = v - lo
    s = torch.where(v > 0, delta / v.clamp(min=1e-6), torch.zeros_like(v))
    d = delta.clamp(min=1e-6)
    hue = torch.where(v == r, ((g - b) / d) % 6, torch.where(v == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    return torch.where(delta > 0, hue, torch.zeros_like(hue)), s, v


def _edges(rgb: torch.Tensor) -> torch.Tensor:
    y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
    lap = torch.nn.functional.conv2d(y, _LAPLACE)
    gx, gy = y[..., :, 1:] - y[..., :, :-1], y[..., 1:, :] - y[..., :-1, :]
    grad = (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt()
    return torch.stack([lap.flatten(1).var(1), grad.flatten(1).mean(1)], 1)


def colour_stats(x: torch.Tensor) -> torch.Tensor:
    """(B, COLOUR_FEATURES) tone and colour statistics of a batch of normalised views."""
    rgb = rgb01(x)
    hue, s, v = _hsv(rgb)
    rg, yb = rgb[:, 0] - rgb[:, 1], 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    colourful = (rg.flatten(1).std(1) ** 2 + yb.flatten(1).std(1) ** 2).sqrt() \
        + 0.3 * (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2).sqrt()
    flat = rgb.flatten(2)
    clipped = torch.cat([(flat <= 1 / 255).float().mean(2), (flat >= 254 / 255).float().mean(2)], 1)
    out = torch.cat([_moments(rgb), _histogram(s, 16), _histogram(v, 16), _histogram(hue, 12, s),
                     colourful[:, None], clipped, _edges(rgb)], 1)
    assert out.shape[1] == COLOUR_FEATURES
    return out


def main() -> int:
    _, work, rows, base = start(__doc__)
    whole, crop = cached_views(rows, work, base, "colour", "colour-v1", lambda: colour_stats)
    pools = {"G": base,
             "K1": with_views(base, np.concatenate([base.whole, whole], 2), np.concatenate([base.crop, crop], 2)),
             "K2": with_views(base, np.concatenate([base.whole, whole], 2), None),
             "K0": with_views(base, whole, crop)}
    out = compare(pools, rows, work, "colour")
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
