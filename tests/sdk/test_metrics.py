"""Metrics agree with their definitions (checked against brute force)."""

import itertools

import numpy as np
import pytest

from aligngemini_sdk.metrics import binary_metrics, bootstrap_ci, per_source, roc_auc


def brute_auc(y, s):
    pos = [b for a, b in zip(y, s) if a]
    neg = [b for a, b in zip(y, s) if not a]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 8, 60) / 8.0  # many ties
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s))


def test_auc_undefined_for_one_class():
    assert roc_auc([1, 1], [0.2, 0.3]) is None


def test_balanced_accuracy_and_per_source():
    y = [0, 0, 0, 0, 1, 1]
    s = [0.1, 0.2, 0.3, 0.9, 0.9, 0.1]
    m = binary_metrics(y, s)
    assert m["acc_real"] == 0.75 and m["acc_fake"] == 0.5 and m["balanced_accuracy"] == 0.625
    ps = per_source(y, s, ["a", "a", "b", "b", "b", "a"])
    assert ps["a"]["n"] == 3 and ps["b"]["acc_fake"] == 1.0


def test_auc_with_continuous_scores_matches_pairwise_definition():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s))


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_more_images():
    rng = np.random.default_rng(0)

    def sample(n):
        y = np.repeat([0, 1], n)
        return y, rng.normal(size=2 * n) + 1.2 * y

    y, s = sample(75)
    ci = bootstrap_ci(y, s, threshold=0.6)
    m = binary_metrics(y, s, 0.6)
    lo, hi = ci["balanced_accuracy"]
    assert lo < m["balanced_accuracy"] < hi and ci["auc"][0] < m["auc"] < ci["auc"][1]
    assert 0.05 < hi - lo < 0.3  # ~150 images: an interval of about +-7 points, not a point
    assert bootstrap_ci(y, s, threshold=0.6) == ci  # seeded: the report is reproducible
    y2, s2 = sample(1500)
    big = bootstrap_ci(y2, s2, threshold=0.6, n_boot=300)
    assert big["balanced_accuracy"][1] - big["balanced_accuracy"][0] < (hi - lo) / 2
    assert bootstrap_ci([1, 1, 1], [0.2, 0.5, 0.9]) is None
