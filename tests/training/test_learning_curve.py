"""The learning curve's bookkeeping: subsets are every combination up to SUBSETS of them, else a fixed draw of
SUBSETS; each held-out repository's rate is averaged over its subsets before repositories are averaged."""

import itertools

from training.learning_curve import SUBSETS, Run, curve, subsets


def test_subsets_are_all_combinations_when_few_and_a_fixed_draw_when_many():
    five = ["a", "b", "c", "d", "e"]
    assert subsets(five, 1, "h") == [(x,) for x in five]
    drawn = subsets(five, 2, "h")
    assert len(drawn) == SUBSETS and len(set(drawn)) == SUBSETS
    assert set(drawn) <= set(itertools.combinations(five, 2))
    assert drawn == subsets(five, 2, "h")  # seeded by the held-out repository and k


def test_each_repository_is_averaged_over_its_subsets_before_repositories_are():
    runs = [Run("f1", "fake", 1, ("x",), 0.5, 1.0), Run("f1", "fake", 1, ("y",), 0.5, 0.0),
            Run("f1", "fake", 1, ("z",), 0.5, 0.0), Run("f2", "fake", 1, ("x",), 0.5, 1.0),
            Run("r1", "real", 1, ("x",), 0.5, 0.2), Run("r1", "real", 2, ("x", "y"), 0.5, 0.0),
            Run("f1", "fake", 2, ("x", "y"), 0.5, 1.0)]
    one, two = curve(runs)
    assert (one.k, one.runs) == (1, 5)
    assert abs(one.mean_tpr_fake_repos - (1 / 3 + 1.0) / 2) < 1e-12  # not 2 / 4 pooled over runs
    assert abs(one.mean_fpr_real_repos - 0.2) < 1e-12
    assert abs(one.balanced_accuracy - 0.5 * (one.mean_tpr_fake_repos + 0.8)) < 1e-12
    assert (two.k, two.mean_tpr_fake_repos, two.mean_fpr_real_repos) == (2, 1.0, 0.0)
