"""Exploration for issue 16, development repositories only: does the whole-image view's squash teach the heads an
image's aspect ratio instead of its content?

    python -m training.explore_aspect --work runs/semantic

G's whole-image view resizes the whole image to 224 x 224 (``resize="exact"``), so a 4:3 photo reaches the backbone
squashed and a square image does not: the view carries the aspect ratio. In the recipe's data the two are far from
independent of the label (counted on the training and development repositories before this ran; the final test was
not read): 99 % of the training fakes are square (CNNDetection 200 of 200, the Stable Diffusion set 32 of 36), while
the training reals are square only in CNNDetection's pairs and FFDNet's 24, and SelfExSR's 200 and DnCNN's 29 are
not (5 % and 0 % square). Of the development repositories, the four fake ones G catches best are square (ComfyUI 18
of 18, Hunyuan-DiT 7 of 7, Kolors 20 of 23; ai-bingo 27 of 27, caught about half) and the two it misses most are
not (Nano Banana 4 of 20 square, caught 5 %; Midjourney v7 2 of 10, caught 50 %); three of the four development
real repositories are not square (cats and dogs, camera EXIF set, sam2) and PolyU is (512 crops). Repository
balancing makes "not square, so real" cheap to learn. One candidate removes the cue:
- **S**: G with the whole-image view made as the SDK's ``resize="shorter"`` + ``crop="center"`` policy already
  makes it: the shorter side resized to 224, the centre 224 x 224 kept -- an undistorted square, whatever the
  image's shape (content at the long sides' ends is lost). The crop view (the pixel branch) is G's.
Informational, not a candidate: **aspect**, a head on log(long side / short side) alone in both views (how much the
shape alone tells the development repositories apart under this protocol).

Rule, written before it ran (2026-12-03, session 20): "worth building" iff S beats G (reproduced here) by >= 3 points
of repository-weighted balanced accuracy at fpr5 with a mean real-repository FPR <= 10 %, under train_semantic.py's
leave-one-repository-out protocol (10 development repositories; the final-test repositories are not read). S
would ship as G's recipe with the semantic branch's ``input`` changed (the SDK runs that policy today, including
the JPEG DCT-reduced decode), same size and cost, and the final test would be scored for it once, as a third look.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from aligngemini_sdk.export.wholeimage import ALL_TAPS, WholeImageExpert
from aligngemini_sdk.image import load_image
from training.exploration import cached_views, compare, start, with_views
from training.train_semantic import SPEC, Pool
from training.wild_split import SHARED

#: the whole-image view without the squash: shorter side to 224, centre crop (the SDK's "shorter" policy)
SQUARE_SPEC = replace(SPEC, resize="shorter", crop="center")


def aspect_feature(base: Pool) -> np.ndarray:
    """(N, 2, 1): log(long side / short side) of each kept image as served (both versions keep the shape)."""
    out = []
    for r in base.rows:
        h, w = load_image(SHARED / r["path"]).rgb.shape[:2]
        out.append(np.log(max(h, w) / min(h, w)))
    return np.repeat(np.asarray(out, np.float32)[:, None, None], 2, axis=1)


def main() -> int:
    _, work, rows, base = start(__doc__)
    whole, _ = cached_views(rows, work, base, "square", "square-v1",
                            lambda: WholeImageExpert(pretrained=True, taps=ALL_TAPS).eval().features, SQUARE_SPEC)
    out = compare({"G": base, "S": with_views(base, whole, None)}, rows, work, "aspect")
    shape = aspect_feature(base)
    compare({"G": base, "aspect": with_views(base, shape, shape)}, rows, work, "aspect-only")
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
