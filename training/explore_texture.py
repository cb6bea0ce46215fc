"""Exploration for issue 16, development repositories only: do an image's richest and poorest texture patches,
tiled into 224 x 224 mosaics at native resolution (PatchCraft's rich / poor texture contrast), tell modern
generators from photos better than G's centre crop?

    python -m training.explore_texture --work runs/semantic

Each image, as served and as its web version (``served_and_augmented``), is cut into a centred grid of PATCH x PATCH
patches; a patch's texture is the integer sum of absolute differences between neighbouring pixels in four directions
(horizontal, vertical, both diagonals; all channels). The MOSAIC_SIDE ** 2 richest, in rank order, tile the rich
mosaic and the as many poorest the poor one (patches repeat when an image has fewer). Both mosaics go through G's
frozen Lite0, pooled at every block. Candidates (G's whole-image view unchanged): R1 the rich mosaic as the crop
view; R2 rich and poor together; R3 G's centre crop, rich and poor together. Rule, written in training/EXPLORATION.md
and committed before this ran: worth building iff the best beats G by >= 3 points of repository-weighted balanced
accuracy at fpr5 with a mean real-repository FPR <= 10 % (final-test repositories not read).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from aligngemini_sdk.export.wholeimage import ALL_TAPS, WholeImageExpert
from aligngemini_sdk.preprocess import preprocess
from training.exploration import aligned, compare, start, with_views
from training.train_semantic import CROP_SPEC, Pool, _decoded_batches, rows_key, served_and_augmented

PATCH = 32
MOSAIC_SIDE = 7  # 7 x 7 patches of 32: a 224 x 224 mosaic
TAG = "texture-v1"


def texture(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Per patch of the centred PATCH grid, the sum of absolute neighbour differences in four directions (int64),
    flattened row-major, and the grid's top-left corner."""
    h, w = rgb.shape[:2]
    gh, gw = max(1, h // PATCH), max(1, w // PATCH)
    top, left = max(0, (h - gh * PATCH) // 2), max(0, (w - gw * PATCH) // 2)
    x = rgb[top:top + gh * PATCH, left:left + gw * PATCH].astype(np.int32)
    d = np.zeros(x.shape[:2], np.int64)
    d[:, :-1] += np.abs(x[:, 1:] - x[:, :-1]).sum(axis=2)
    d[:-1, :] += np.abs(x[1:, :] - x[:-1, :]).sum(axis=2)
    d[:-1, :-1] += np.abs(x[1:, 1:] - x[:-1, :-1]).sum(axis=2)
    d[:-1, 1:] += np.abs(x[1:, :-1] - x[:-1, 1:]).sum(axis=2)
    per_patch = d[:gh * PATCH, :gw * PATCH].reshape(gh, PATCH, gw, PATCH).sum(axis=(1, 3))
    return per_patch.ravel(), (top, left)


def mosaics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rich, poor): MOSAIC_SIDE x MOSAIC_SIDE tiles of the richest and poorest patches, richest / poorest first."""
    if min(rgb.shape[:2]) < PATCH:  # a tiny image: its own pixels, edge-padded to one patch
        rgb = np.pad(rgb, ((0, max(0, PATCH - rgb.shape[0])), (0, max(0, PATCH - rgb.shape[1])), (0, 0)), mode="edge")
    score, (top, left) = texture(rgb)
    gw = max(1, rgb.shape[1] // PATCH)
    order = np.argsort(-score, kind="stable")
    k = MOSAIC_SIDE * MOSAIC_SIDE
    out = []
    for chosen in (np.resize(order, k), np.resize(order[::-1], k)):
        tiles = [rgb[top + (i // gw) * PATCH:top + (i // gw + 1) * PATCH, left + (i % gw) * PATCH:left + (i % gw + 1) * PATCH]
                 for i in chosen]
        rows = [np.concatenate(tiles[r * MOSAIC_SIDE:(r + 1) * MOSAIC_SIDE], axis=1) for r in range(MOSAIC_SIDE)]
        out.append(np.ascontiguousarray(np.concatenate(rows, axis=0)))
    return out[0], out[1]


def extract(rows: list[dict[str, str]], cache_path: str) -> None:
    """(N, 2 versions, F) Lite0 features of the rich and the poor mosaic of each readable image, cached."""
    model = WholeImageExpert(pretrained=True, taps=ALL_TAPS).eval()
    torch.set_num_threads(2)
    n, ok = len(rows), np.zeros(len(rows), bool)
    out: dict[str, np.ndarray] = {}
    for done, images in _decoded_batches(rows, "texture mosaics"):
        views = [preprocess(m, CROP_SPEC) for rgb, path in images for v in served_and_augmented(rgb, path)
                 for m in mosaics(v)]
        with torch.no_grad():
            y = model.features(torch.from_numpy(np.stack(views))).numpy().reshape(len(done), 2, 2, -1)
        out = out or {kind: np.zeros((n, 2, y.shape[3]), np.float32) for kind in ("rich", "poor")}
        out["rich"][done], out["poor"][done], ok[done] = y[:, :, 0], y[:, :, 1], True
    np.savez(cache_path, rich=out["rich"], poor=out["poor"], ok=ok)


def main() -> int:
    _, work, rows, base = start(__doc__)
    cache = work / f"features-texture-{rows_key(TAG, rows)}.npz"
    if not cache.is_file():
        extract(rows, str(cache))
    z = np.load(cache, allow_pickle=False)
    rich, poor = (aligned(z[k], z["ok"], base, rows, f"{k} mosaic") for k in ("rich", "poor"))
    g_crop = base.crop  # G's probe reads every column of it (ALL_TAPS)
    pools: dict[str, Pool] = {"G": base, "R1": with_views(base, None, rich),
                              "R2": with_views(base, None, np.concatenate([rich, poor], axis=2)),
                              "R3": with_views(base, None, np.concatenate([g_crop, rich, poor], axis=2))}
    out = compare(pools, rows, work, "texture")
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
