"""What the explorations of issue 16 share (training/EXPLORATION.md): G's design reading other features, and one
comparison against G under train_semantic.py's leave-one-repository-out protocol, with the rule every exploration
states before it runs: "worth building" iff the best candidate beats G by the rounds' margin (3 points of
repository-weighted balanced accuracy at fpr5) with a mean real-repository FPR <= 10 %."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aligngemini_sdk.manifest import InputSpec
from training.train_semantic import (
    ROUNDS,
    SPEC,
    Pool,
    cross_validate,
    extract,
    extract_to,
    load_rows,
    rows_key,
    served_and_augmented,
    summarize,
)


def start(doc: str, more: Callable[[argparse.ArgumentParser], object] | None = None
          ) -> tuple[argparse.Namespace, Path, list[dict[str, str]], Pool]:
    """An exploration's command line (``--work``, and what ``more`` adds), the split's rows and G's features (cached
    in ``--work``): (args, work, rows, pool)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--work", default="runs/semantic")
    if more is not None:
        more(ap)
    args = ap.parse_args()
    work, rows = Path(args.work), load_rows()
    return args, work, rows, extract(rows, work)


def with_views(base: Pool, whole: np.ndarray | None, crop: np.ndarray | None) -> Pool:
    """``base`` (Lite0) with the whole-image and/or crop probes of G reading other features, every column."""
    pool = Pool(base.rows, base.whole, base.crop, base.pixel, base.y)
    if whole is not None:
        pool.selected["Ewhole", 2, 0] = whole
    if crop is not None:
        pool.selected["Ecrop", 2, 0] = crop
    return pool


def cached_views(rows: list[dict[str, str]], work: Path, base: Pool, name: str, tag: str,
                 build: Callable[[], Callable[[torch.Tensor], torch.Tensor]],
                 whole_spec: InputSpec = SPEC) -> tuple[np.ndarray, np.ndarray]:
    """(whole, crop): each view's features (kept images, 2 versions, F) under ``build()`` (a batch of normalised
    views -> features; the whole-image view made as ``whole_spec`` says), extracted only when
    ``work/features-<name>-<key>.npz`` (keyed by ``tag`` and the images) is missing, and aligned with ``base``'s rows."""
    cache = work / f"features-{name}-{rows_key(tag, rows)}.npz"
    if not cache.is_file():
        extract_to(rows, cache, served_and_augmented, build(), name, whole_spec)
    z = np.load(cache, allow_pickle=False)
    return aligned(z["whole"], z["ok"], base, rows, name), aligned(z["crop"], z["ok"], base, rows, name)


def aligned(features: np.ndarray, ok: np.ndarray, base: Pool, rows: list[dict[str, str]], what: str) -> np.ndarray:
    """``features`` of the images ``base`` kept (its rows of ``rows``), refusing a cache that read other images."""
    kept = np.asarray([r in base.rows for r in rows])
    if not np.array_equal(ok, kept):
        raise SystemExit(f"{what} and Lite0 features dropped different images")
    if not np.isfinite(features[ok]).all():
        raise SystemExit(f"non-finite {what} features")
    return features[ok]


def compare(pools: dict[str, Pool], rows: list[dict[str, str]], work: Path, label: str) -> dict[str, Any]:
    """Each pool's G under the protocol ("G": the shipped features, cached in ``work``; the others in
    ``work/<label>-<name>``), the best other one, and whether it is worth building; written to
    ``work/explore-<label>.json`` and printed."""
    groups = sorted({r["source"] for r in rows if r["role"] == "dev"})
    summary = {}
    for name, pool in pools.items():
        sub = work if name == "G" else work / f"{label}-{name}"
        sub.mkdir(parents=True, exist_ok=True)
        summary[name] = summarize(cross_validate(pool, groups, 1.0, sub, ("G",)), ("G",))["G"]
    others = [n for n in pools if n != "G"]
    best = max(others, key=lambda n: summary[n]["balanced_accuracy_repo_weighted"])
    gain = summary[best]["balanced_accuracy_repo_weighted"] - summary["G"]["balanced_accuracy_repo_weighted"]
    worth = gain >= ROUNDS[3].margin and summary[best]["mean_fpr_real_repos"] <= 0.10
    out = {"summary": summary, "best": best, "worth_building": worth}
    (work / f"explore-{label}.json").write_text(json.dumps(out, indent=1, default=float))
    for name, s in summary.items():
        print(f"{name}: BA {s['balanced_accuracy_repo_weighted']:.1%}  TPR {s['mean_tpr_fake_repos']:.1%}  "
              f"FPR {s['mean_fpr_real_repos']:.1%}  AUC {s['pooled_auc']:.3f}  "
              + " ".join(f"{k.split('/')[-1][:12]}={v:.2f}" for k, v in s["per_repo"].items()))
    print(f"best of {', '.join(others)}: {best}; worth building: {worth}")
    return out
