"""Detection metrics in plain numpy (no sklearn on devices): ROC-AUC, balanced accuracy, per-source tables.

Used by the export gate, ``aligngemini eval`` and ``aligngemini bench`` so all three report the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np


class Metrics(TypedDict):
    """What :func:`binary_metrics` measures (a TypedDict: it is the JSON the reports have always written)."""

    n: int
    n_real: int
    n_fake: int
    acc_real: float | None
    acc_fake: float | None
    balanced_accuracy: float | None
    accuracy: float | None
    auc: float | None


class Intervals(TypedDict):
    """:func:`bootstrap_ci`'s percentile intervals: ``[low, high]`` of balanced accuracy and AUC."""

    level: float
    n_boot: int
    method: str
    balanced_accuracy: list[float]
    auc: list[float]


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve via the rank statistic (ties count half). None if one class is absent."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each group of tied scores
    ranks = (last - (counts - 1) / 2.0)[inverse]  # the group's average rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_ci(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5,
                 predictions: Sequence[bool] | None = None, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> Intervals | None:
    """Percentile confidence intervals of balanced accuracy and AUC from a stratified bootstrap.

    Why: held-out sets here have a few hundred images, where one image moves balanced accuracy by about a
    point; a target such as "80 %" is only meaningful next to its interval. Reals and fakes are resampled
    separately (their counts fixed), as the metric conditions on the class. None if a class is absent.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pred = np.asarray(predictions, dtype=bool) if predictions is not None else s > threshold
    real, fake = np.flatnonzero(~y), np.flatnonzero(y)
    if len(real) == 0 or len(fake) == 0:
        return None
    rng = np.random.default_rng(seed)
    bacc, auc = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        r, f = rng.choice(real, len(real)), rng.choice(fake, len(fake))
        bacc[i] = 0.5 * ((~pred[r]).mean() + pred[f].mean())
        idx = np.concatenate([r, f])
        auc[i] = roc_auc(y[idx], s[idx])
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {"level": level, "n_boot": n_boot, "method": "stratified bootstrap, percentile",
            "balanced_accuracy": [float(v) for v in np.percentile(bacc, q)],
            "auc": [float(v) for v in np.percentile(auc, q)]}


def binary_metrics(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float = 0.5,
                   predictions: Sequence[bool] | np.ndarray | None = None) -> Metrics:
    """Accuracy on real, on fake, balanced accuracy, AUC and counts. ``predictions`` overrides thresholding
    (for fused verdicts that are not a threshold of one score)."""
    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(predictions, dtype=bool) if predictions is not None else np.asarray(scores) > threshold
    acc_real = float((~pred[~y]).mean()) if (~y).any() else None
    acc_fake = float(pred[y].mean()) if y.any() else None
    present = [a for a in (acc_real, acc_fake) if a is not None]
    return {
        "n": len(y), "n_real": int((~y).sum()), "n_fake": int(y.sum()),
        "acc_real": acc_real, "acc_fake": acc_fake,
        "balanced_accuracy": float(np.mean(present)) if present else None,
        "accuracy": float((pred == y).mean()) if len(y) else None,
        "auc": roc_auc(y.astype(int), scores),
    }


def per_source(labels: Sequence[int], scores: Sequence[float], sources: Sequence[str],
               threshold: float = 0.5, predictions: Sequence[bool] | None = None) -> dict[str, Metrics]:
    """``binary_metrics`` per source (a source holding only reals or only fakes reports its accuracy)."""
    out: dict[str, Metrics] = {}
    src = np.asarray(sources)
    preds = None if predictions is None else np.asarray(predictions)
    for name in sorted(set(sources)):
        m = src == name
        out[name] = binary_metrics(np.asarray(labels)[m], np.asarray(scores)[m], threshold,
                                   None if preds is None else preds[m])
    return out


def fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.3f}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
