"""Metrics agree with their definitions (checked against brute force)."""

import itertools

import numpy as np
import pytest
from aligngemini_sdk.metrics import binary_metrics, per_source, roc_auc


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
