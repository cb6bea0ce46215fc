"""Exploration for issue 16, development repositories only: do forensic pixel features add what ImageNet features miss?

    python -m training.explore_forensic --work runs/semantic

G's crop view reads ImageNet features (Lite0 pooled at every block). Three families of features built to see
generator traces rather than objects, computed on the same native 224 centre crop (both versions of each image):
- **Tiny-LaDeDa** (../shared/data/weights/tiny_ladeda: the WildRF and ForenSynth checkpoints, a real detector trained
  on in-the-wild social-media fakes and on ProGAN respectively), under each of its six fixed preprocessings (the
  checkpoints do not record which one they were trained with): the mean and standard deviation of its 8 feature maps
  and the mean, standard deviation, maximum and 90th percentile of its per-patch logits -- 12 x 20 = 240;
- **NPR residuals** (x minus its nearest-neighbour 2x down-and-up-sampling, per channel and position in the 2 x 2
  grid): log mean absolute value and log standard deviation -- 18;
- **residual spectrum** (grey crop minus its 3 x 3 box blur, Hann window): the log power averaged in 16 radial bands,
  and the log power at the periods 2, 4, 8 and 16 pixels on both axes and the diagonal, relative to its band -- 28.

Candidates (G's design otherwise: repository-balanced heads and fusion, l2 1.0, two web versions per image):
- **X1**: the crop view reads G's features **and** the forensic ones (5,072 + 286);
- **X2**: the crop view reads the forensic features alone (fused with G's whole-image view).

Rule, written before it ran (2026-12-02, session 15): "worth building" iff X1 or X2 beats G (reproduced here) by
>= 3 points of repository-weighted balanced accuracy at fpr5 with a mean real-repository FPR <= 10 %, under
train_semantic.py's leave-one-repository-out protocol (10 development repositories; the final-test repositories are
not read). Building it would then be a pre-registered round of training/WILD_VALIDATION.md (the crop branch's ONNX
graph computing both feature sets), not this script.

As run: G 78.6 %, X1 77.2 %, X2 77.3 % (training/EXPLORATION.md) -- not worth building. X2 showed that the forensic
features alone carry about what G's crop view does (AUC 0.861 vs 0.853), in ~20k weights instead of ~3.4M; the crop
branch's budget could then go to a larger whole-image backbone. Hence, written after that run and before this one:
- **Y** (``--lite2``): the forensic features as the crop view, fused with EfficientNet-Lite2's whole-image view
  (explore_backbone's features; its fp16w graph, ~10 MB, fits the bundle beside a tiny crop branch).
Same rule: worth building iff Y beats G by >= 3 points with a mean real-repository FPR <= 10 %. As run: Y 76.6 %,
pooled AUC 0.887 -- not worth building.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from aligngemini_sdk.export.ladeda import PREPROCESS, TinyLaDeDa, load_ladeda
from training.exploration import cached_views, compare, start, with_views
from training.explore_backbone import lite2_views
from training.wild_split import SHARED

CHECKPOINTS = ("WildRF", "ForenSynth")
BANDS = 16
PERIODS = (2, 4, 8, 16)


def ladeda_nets() -> list[TinyLaDeDa]:
    weights = SHARED / "weights" / "tiny_ladeda"
    return [load_ladeda(weights / f"{c}_Tiny_LaDeDa.pth", p) for c in CHECKPOINTS for p in PREPROCESS]


def ladeda_features(net: TinyLaDeDa, x: torch.Tensor) -> torch.Tensor:
    """(N, 20): feature-map means and standard deviations, and the per-patch logits' mean, std, max and q90."""
    f = net.features(x)
    patch = torch.einsum("nchw,c->nhw", f, net.fc.weight[0]).flatten(1) + net.fc.bias
    return torch.cat([f.mean((2, 3)), f.std((2, 3)), patch.mean(1, keepdim=True), patch.std(1, keepdim=True),
                      patch.amax(1, keepdim=True), torch.quantile(patch, 0.9, dim=1, keepdim=True)], 1)


def npr_features(x: torch.Tensor) -> torch.Tensor:
    """(N, 18): per channel and each of the three non-anchor positions of the 2 x 2 grid, log mean |r| and log std."""
    r = x - F.interpolate(F.interpolate(x, scale_factor=0.5, mode="nearest"), size=x.shape[-2:], mode="nearest")
    parts = [r[..., dy::2, dx::2].flatten(2) for dy, dx in ((0, 1), (1, 0), (1, 1))]
    return torch.cat([torch.log(p.abs().mean(2) + 1e-6) for p in parts] + [torch.log(p.std(2) + 1e-6) for p in parts], 1)


def spectrum_features(x: torch.Tensor) -> torch.Tensor:
    """(N, 28): the grey high-pass residual's log power in BANDS radial bands, and at each of PERIODS on the two axes
    and the diagonal, relative to the log power of its band."""
    grey = x.mean(1, keepdim=True)
    res = (grey - F.avg_pool2d(grey, 3, 1, 1, count_include_pad=False))[:, 0]
    n = res.shape[-1]
    hann = torch.hann_window(n, periodic=False)
    power = torch.fft.fft2(res * hann[:, None] * hann[None, :]).abs().square() + 1e-12
    k = torch.fft.fftfreq(n) * n
    radius = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    band = torch.clamp((radius / radius.max() * BANDS).long(), max=BANDS - 1)
    logp = torch.log(power)
    band_mean = torch.stack([logp[:, band == b].mean(1) for b in range(BANDS)], 1)
    peaks = []
    for p in PERIODS:
        f = n // p
        for fy, fx in ((0, f), (f, 0), (f, f)):
            peaks.append(logp[:, fy, fx] - band_mean[:, band[fy, fx]])
    return torch.cat([band_mean, torch.stack(peaks, 1)], 1)


def forensic(nets: list[TinyLaDeDa]) -> Callable[[torch.Tensor], torch.Tensor]:
    for net in nets:
        net.to(memory_format=torch.channels_last)  # 8-channel convolutions: ~2x faster on CPU than NCHW

    def run(x: torch.Tensor) -> torch.Tensor:
        xc = x.contiguous(memory_format=torch.channels_last)
        return torch.cat([ladeda_features(net, xc) for net in nets] + [npr_features(x), spectrum_features(x)], 1)
    return run


def main() -> int:
    args, work, rows, base = start(__doc__, lambda ap: ap.add_argument(
        "--lite2", action="store_true", help="also Y: the forensic crop view with Lite2's whole image"))
    crop = cached_views(rows, work, base, "forensic", "forensic-v1", lambda: forensic(ladeda_nets()))[1]
    pools = {"G": base, "X1": with_views(base, None, np.concatenate([base.crop, crop], 2)),
             "X2": with_views(base, None, crop)}
    if args.lite2:
        pools["Y"] = with_views(base, lite2_views(rows, work, base)[0], crop)
    compare(pools, rows, work, "forensic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
