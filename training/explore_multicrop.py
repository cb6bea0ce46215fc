"""Exploration for issue 16, development repositories only: does scoring five native-resolution crops per image
(the centre and the four quarter points, logits averaged) instead of the centre crop alone help the in-the-wild
default's pixel view?

    python -m training.explore_multicrop --work runs/semantic

Rule, written before it ran: "worth building" iff, under train_semantic's leave-one-repository-out protocol at the
fpr5 point, candidate D5 (five crops + whole image, logistic fusion) beats D (the shipped design) by >= 2 points of
repo-weighted balanced accuracy with mean real-repo FPR <= 10 %. Nothing here ships: five crops cost five pixel-branch
calls (~25 ms on 2 cores, over the 15 ms budget), and the final-test repositories are not read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aligngemini_sdk.export.calibrate import BranchScores, fit_logistic, threshold_for_fpr
from aligngemini_sdk.export.wholeimage import SIDE, TAPS, WholeImageExpert, n_features
from aligngemini_sdk.image import load_image
from aligngemini_sdk.preprocess import preprocess
from training.train_semantic import (
    CROP_SPEC,
    FPR,
    SHARED,
    Fit,
    Head,
    Pool,
    extract,
    fit_probe,
    fitting_idx,
    fuse,
    load_rows,
    oof,
    probe_scores,
    rows_key,
    sigmoid,
    summarize,
)


def five_crops(rgb: np.ndarray) -> list[np.ndarray]:
    """The centre crop and crops centred on the four quarter points, each SIDE x SIDE at native resolution (an image
    smaller than that: its centre crop, padded as the SDK pads, five times)."""
    h, w = rgb.shape[:2]
    if h < SIDE or w < SIDE:
        return [preprocess(rgb, CROP_SPEC)] * 5
    out = [preprocess(rgb, CROP_SPEC)]
    for fy in (0.25, 0.75):
        for fx in (0.25, 0.75):
            top = min(max(0, round(fy * h) - SIDE // 2), h - SIDE)
            left = min(max(0, round(fx * w) - SIDE // 2), w - SIDE)
            out.append(preprocess(np.ascontiguousarray(rgb[top:top + SIDE, left:left + SIDE]), CROP_SPEC))
    return out


def crop_features(pool: Pool, work: Path) -> np.ndarray:
    """(N, 5, F) backbone features of the five crops of each pool image (as served, no augmentation), cached."""
    key = rows_key("crops5", pool.rows)
    cache = work / f"crops5-{key}.npz"
    if not cache.is_file():
        model = WholeImageExpert(pretrained=True).eval()
        torch.set_num_threads(2)
        feats = np.zeros((len(pool.rows), 5, n_features(TAPS)), np.float32)
        for i, row in enumerate(pool.rows):
            crops = five_crops(load_image(SHARED / row["path"]).rgb)  # extract() kept only images the SDK decodes
            with torch.no_grad():
                feats[i] = model.features(torch.from_numpy(np.stack(crops))).numpy()
            print(f"\r[crops5] {i + 1}/{len(pool.rows)}", end="", file=sys.stderr)
        print(file=sys.stderr)
        np.savez(cache, feats=feats)
    return np.load(cache, allow_pickle=False)["feats"]


def five_crop_scores(head: Head, feats: np.ndarray) -> np.ndarray:
    """P(fake) from the mean logit of the five crops."""
    n, k, f = feats.shape
    return sigmoid(head.logits(feats.reshape(n * k, f)).reshape(n, k).mean(axis=1))


def oof5(pool: Pool, crops5: np.ndarray, groups: list[str], l2: float) -> np.ndarray:
    return np.concatenate([five_crop_scores(fit_probe(pool, "Dcrop", fitting_idx(pool, Fit(), groups, g), l2),
                                            crops5[pool.idx("dev", g)]) for g in groups])


def fold(pool: Pool, crops5: np.ndarray, held: str, groups: list[str], l2: float) -> dict[str, Any]:
    """train_semantic's protocol for D (one crop) and D5 (five crops), side by side."""
    rest = [g for g in groups if g != held]
    rest_idx = np.concatenate([pool.idx("dev", g) for g in rest])
    fit_idx, h_idx = np.concatenate([pool.idx("train"), rest_idx]), pool.idx("dev", held)
    whole = (oof(pool, "B2", rest, l2), probe_scores(pool, "B2", fit_idx, h_idx, l2))
    crop1 = (oof(pool, "Dcrop", rest, l2), probe_scores(pool, "Dcrop", fit_idx, h_idx, l2))
    crop5 = (oof5(pool, crops5, rest, l2), five_crop_scores(fit_probe(pool, "Dcrop", fit_idx, l2), crops5[h_idx]))
    real = pool.y[rest_idx] == 0
    out: dict[str, Any] = {"repo": held, "label": "fake" if pool.y[h_idx][0] else "real", "n": len(h_idx)}
    for name, crop in (("D", crop1), ("D5", crop5)):
        w, bias = fit_logistic(BranchScores(pool.y[rest_idx], crop[0], whole[0], "inner"))
        inner, scores = fuse(crop[0], whole[0], w, bias), fuse(crop[1], whole[1], w, bias)
        t = threshold_for_fpr(inner[real], FPR)
        out[name] = {"threshold": t, "rate_fake": float(np.mean(scores > t)), "scores": scores.tolist()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/semantic")
    ap.add_argument("--l2", type=float, default=1.0)
    args = ap.parse_args()
    work = Path(args.work)
    rows = [r for r in load_rows() if r["role"] in ("train", "dev")]  # the final-test repositories are not read
    pool = extract(rows, work)
    crops5 = crop_features(pool, work)
    groups = sorted({r["source"] for r in pool.rows if r["role"] == "dev"})
    folds = [fold(pool, crops5, g, groups, args.l2) for g in groups]
    summary = summarize(folds, ("D", "D5"))
    d, d5 = (summary[c]["balanced_accuracy_repo_weighted"] for c in ("D", "D5"))
    worth = d5 - d >= 0.02 and summary["D5"]["mean_fpr_real_repos"] <= 0.10
    result = {"summary": summary, "gain_points": 100 * (d5 - d), "worth_building": bool(worth)}
    (work / "multicrop.json").write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
