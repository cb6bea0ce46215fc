"""Exploration for issue 16, development repositories only: does the backbone's sensitivity to a small, fixed
perturbation of the input tell generated images from photos?

    python -m training.explore_perturbation --work runs/semantic

The idea is RIGID's (He et al., 2024, "RIGID: a training-free and model-agnostic framework for robust AI-generated
image detection"): a real photo's representation moves less under a tiny input noise than a generated image's. It is
training-free there (on DINOv2); here it is read as extra features beside G's, through the shipped frozen Lite0, so
its cost at inference would be one more backbone pass per view, on a constant noise pattern that the ONNX graph
could carry (deterministic: the same answer on every CPU).

For each view (the whole image at 224, the native 224 centre crop) and version (as served, and G's web version), the
image and the image plus one fixed Gaussian noise pattern (seed 0, sigma = NOISE_SIGMA of the 0-1 pixel range, the
same pattern for every image) go through Lite0:
- **Z1**: G's features plus 34 sensitivity scalars per view: per block (16) and at the head, the cosine similarity of
  the clean and noisy activation maps and their relative L2 change;
- **Z2**: G's features plus the change of G's pooled features under the noise (noisy - clean, every pooled column).
Also reported, informational only: the training-free score (1 - the head map's cosine similarity) per view, as AUC
of each development fake repository against the development real photos.

Rule, written before it ran (2026-12-03, session 17): "worth building" iff Z1 or Z2 beats G (reproduced here) by
>= 3 points of repository-weighted balanced accuracy at fpr5 with a mean real-repository FPR <= 10 %, under
train_semantic.py's leave-one-repository-out protocol (10 development repositories; the final-test repositories are
not read). Building it would also need the whole default's ``detect()`` p50 to stay <= 15 ms with the second pass.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import numpy as np
import torch

from aligngemini_sdk.export.wholeimage import ALL_TAPS, WholeImageExpert, n_features
from aligngemini_sdk.manifest import IMAGENET_STD
from training.exploration import cached_views, compare, start, with_views
from training.train_semantic import SIDE, Pool

NOISE_SIGMA = 0.05
#: per view: 17 cosine similarities (16 blocks, head), then 17 relative L2 changes
N_SENSITIVITY = 34


def noise_pattern(side: int = SIDE, sigma: float = NOISE_SIGMA) -> torch.Tensor:
    """(3, side, side): sigma of the 0-1 pixel range, in the ImageNet-normalised space the backbone reads."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, side, side, generator=g)
    return z * sigma / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _maps(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's activation map, then the head's (as WholeImageExpert.features walks the net)."""
    out = []
    x = net._swish(net._bn0(net._conv_stem(x)))
    for block in net._blocks:
        x = block(x)
        out.append(x)
    out.append(net._swish(net._bn1(net._conv_head(x))))
    return out


def sensitivity(model: WholeImageExpert, noise: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, N_SENSITIVITY + n_features(ALL_TAPS)): the sensitivity scalars, then pooled(noisy) - pooled(clean)."""
    both = torch.cat([x, x + noise])
    b = len(x)
    cos, rel = [], []
    for m in _maps(model.net, both):
        clean, noisy = m[:b].flatten(1), m[b:].flatten(1)
        cos.append(torch.nn.functional.cosine_similarity(clean, noisy, dim=1))
        rel.append((noisy - clean).norm(dim=1) / clean.norm(dim=1).clamp(min=1e-6))
    pooled = model.features(both)
    return torch.cat([torch.stack(cos + rel, dim=1), pooled[b:] - pooled[:b]], dim=1)


def sensitivity_of_lite0() -> Callable[[torch.Tensor], torch.Tensor]:
    model, noise = WholeImageExpert(pretrained=True, taps=ALL_TAPS).eval(), noise_pattern()
    return lambda x: sensitivity(model, noise, x)


def training_free(base: Pool, whole: np.ndarray, crop: np.ndarray) -> dict[str, dict[str, float]]:
    """AUC of 1 - the head map's cosine similarity (as served), each development fake repository against every
    development real photo, per view (0.5: no signal; informational, no decision reads it)."""
    real = base.idx("dev")[base.y[base.idx("dev")] == 0]
    out: dict[str, dict[str, float]] = {}
    for view, x in (("whole", whole), ("crop", crop)):
        score = 1.0 - x[:, 0, 16]
        out[view] = {}
        for source in sorted({r["source"] for r in base.rows if r["role"] == "dev"}):
            fake = base.idx("dev", source)
            if base.y[fake].all():
                f, r = score[fake][:, None], score[real][None, :]
                out[view][source] = float((f > r).mean() + 0.5 * (f == r).mean())
    return out


def main() -> int:
    _, work, rows, base = start(__doc__)
    whole, crop = cached_views(rows, work, base, "perturb", f"perturb{NOISE_SIGMA}", sensitivity_of_lite0)
    g_whole, g_crop = base.whole, base.crop  # G's Ewhole / Ecrop read every column (ALL_TAPS)
    assert g_whole.shape[2] == n_features(ALL_TAPS)
    free = training_free(base, whole, crop)
    print(json.dumps(free, indent=1))
    s = slice(0, N_SENSITIVITY)
    pools = {"G": base,
             "Z1": with_views(base, np.concatenate([g_whole, whole[:, :, s]], 2), np.concatenate([g_crop, crop[:, :, s]], 2)),
             "Z2": with_views(base, np.concatenate([g_whole, whole[:, :, N_SENSITIVITY:]], 2),
                              np.concatenate([g_crop, crop[:, :, N_SENSITIVITY:]], 2))}
    out = compare(pools, rows, work, "perturbation")
    (work / "explore-perturbation-training-free.json").write_text(json.dumps(free, indent=1))
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
