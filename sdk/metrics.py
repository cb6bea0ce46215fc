"""Detection metrics in plain numpy (no sklearn on devices): ROC-AUC, balanced accuracy, per-source tables.

Used by the export gate, ``aligngemini eval`` and ``aligngemini bench`` so all three report the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve via the rank statistic (ties count half). None if one class is absent."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5,
                   predictions: Sequence[bool] | None = None) -> dict[str, Any]:
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
               threshold: float = 0.5, predictions: Sequence[bool] | None = None) -> dict[str, dict[str, Any]]:
    """``binary_metrics`` per source (a source holding only reals or only fakes reports its accuracy)."""
    out: dict[str, dict[str, Any]] = {}
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
