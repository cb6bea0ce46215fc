"""Cross-validation compares recipe variants on the training pool only: stratified folds that never include a
test or unseen-generator image, and paired per-fold differences."""

from collections import Counter

import pytest

from tests.conftest import SHARED

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_pool_is_train_plus_tune_in_stratified_fixed_folds():
    from training.cv import cv_pool
    from training.train_default import split_rows

    splits = split_rows(SHARED)
    pool = cv_pool(SHARED, 3)
    assert {r["path"] for r in pool} == {r["path"] for r in splits["train"] + splits["tune"]}
    assert not {r["path"] for r in pool} & {r["path"] for r in splits["test"] + splits["unseen"]}
    assert [(r["path"], r["fold"]) for r in pool] == [(r["path"], r["fold"]) for r in cv_pool(SHARED, 3)]
    groups = Counter((r["label"], r["source"], r["fold"]) for r in pool)
    for label, source in {(r["label"], r["source"]) for r in pool}:
        sizes = [groups[(label, source, k)] for k in range(3)]
        assert max(sizes) - min(sizes) <= 1, (label, source, sizes)


def test_summary_reports_per_fold_metrics_and_paired_differences():
    from training.cv import summarize

    # fold 0: both arms rank perfectly; fold 1: "b" ranks one fake below a real, "a" does not
    base = {"label": [0, 0, 1, 1, 0, 0, 1, 1], "fold": [0, 0, 0, 0, 1, 1, 1, 1],
            "source": ["cnndetection", "x", "x", "x", "cnndetection", "x", "x", "x"]}
    runs = {"a": {**base, "p": [0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9]},
            "b": {**base, "p": [0.1, 0.2, 0.8, 0.9, 0.6, 0.2, 0.4, 0.9]}}
    s = summarize(runs, ["a", "b"], 2)
    assert [f["auc"] for f in s["arms"]["a"]["folds"]] == [1.0, 1.0]
    assert s["arms"]["b"]["folds"][1]["auc"] == pytest.approx(0.75)
    assert s["arms"]["b"]["folds"][1]["balanced_accuracy"] == pytest.approx(0.5)
    assert s["arms"]["a"]["cnndetection_real_accuracy"] == 1.0 and s["arms"]["b"]["cnndetection_real_accuracy"] == 0.5
    d = s["paired"]["b - a"]
    assert d["auc"] == pytest.approx([0.0, -0.25]) and d["balanced_accuracy"] == pytest.approx([0.0, -0.5])
