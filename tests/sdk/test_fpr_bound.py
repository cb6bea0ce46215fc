"""How far a false-positive rate measured on n real photos can be trusted: exact binomial arithmetic, the thresholds
that keep a target rate with a stated confidence, and what an untrusted manifest's figures may claim."""

import math

import numpy as np
import pytest

from aligngemini_sdk.export.calibrate import threshold_allowing
from aligngemini_sdk.fpr_bound import (
    allowed_false_positives,
    binomial_cdf,
    fpr_upper_bound,
    measured_upper_bound,
    min_real_images,
)


@pytest.mark.parametrize("n", [1, 7, 30, 153])
@pytest.mark.parametrize("p", [0.01, 0.05, 0.3, 0.9])
def test_the_binomial_cdf_is_the_exact_sum(n, p):
    for x in range(n + 1):
        exact = math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x + 1))
        assert binomial_cdf(x, n, p) == pytest.approx(exact, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize(("n", "p"), [(20_000, 0.05), (5_000, 0.5), (100_000, 0.001)])
def test_a_large_ns_cdf_leaves_out_only_terms_too_small_to_count(n, p):
    """Terms 40 standard deviations below the mass that matters are skipped; every term summed gives the same."""
    mean = n * p
    for x in (int(mean * 0.9), int(mean), int(mean * 1.1)):
        terms = [math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
                          + (n - i) * math.log1p(-p)) for i in range(x + 1)]
        assert binomial_cdf(x, n, p) == pytest.approx(math.fsum(terms), rel=1e-9)


def test_the_upper_bound_is_clopper_pearsons():
    for n in (10, 153, 5000):
        assert fpr_upper_bound(0, n, 0.95) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)  # closed form at 0
        for x in (1, n // 20, n // 2):
            bound = fpr_upper_bound(x, n, 0.95)
            assert x / n < bound < 1 and binomial_cdf(x, n, bound) == pytest.approx(0.05, rel=1e-6)
    assert fpr_upper_bound(7, 153) > fpr_upper_bound(7, 153, 0.9) > 7 / 153  # more confidence, a wider bound
    assert fpr_upper_bound(153, 153) == 1.0


def test_the_fewest_real_photos_for_each_point():
    assert [min_real_images(a, 0.95) for a in (0.01, 0.05, 0.10)] == [299, 59, 29]
    for a, c in ((0.01, 0.95), (0.05, 0.9), (0.001, 0.99)):
        n = min_real_images(a, c)
        assert (1 - a) ** n <= 1 - c < (1 - a) ** (n - 1)  # none of n called fake is just enough
        assert allowed_false_positives(n, a, c) == 0 and allowed_false_positives(n - 1, a, c) is None


def test_the_allowance_is_the_largest_count_whose_bound_meets_the_target():
    for n, a in ((59, 0.05), (153, 0.05), (1000, 0.01), (20000, 0.10)):
        x = allowed_false_positives(n, a, 0.95)
        assert x is not None
        assert fpr_upper_bound(x, n, 0.95) <= a < fpr_upper_bound(x + 1, n, 0.95)
    assert allowed_false_positives(1_000_000, 0.05, 0.95) == 49641  # large n: fast and below n x target


def test_a_threshold_chosen_with_confidence_keeps_its_rate_on_further_photos():
    """The promise itself, measured: real scores drawn alike (uniform, so a threshold t has true rate 1 - t), 4,000
    calibrations of 200 photos each. At 90 % confidence the rate exceeds the 5 % target in at most 10 % of them;
    the empirical quantile exceeds it far more often."""
    rng = np.random.default_rng(0)
    n, target, trials = 200, 0.05, 4000
    guarded, empirical = allowed_false_positives(n, target, 0.9), math.floor(target * n)
    assert guarded is not None and guarded < empirical
    over = {"guarded": 0, "empirical": 0}
    for _ in range(trials):
        scores = rng.random(n)
        over["guarded"] += 1 - threshold_allowing(scores, guarded) > target
        over["empirical"] += 1 - threshold_allowing(scores, empirical) > target
    assert over["guarded"] / trials <= 0.10 + 3 * math.sqrt(0.1 * 0.9 / trials)
    assert over["empirical"] / trials > 0.3


@pytest.mark.parametrize("measured", [
    {}, {"fpr": 0.05}, {"n_real": 100}, {"fpr": "0.05", "n_real": 100}, {"fpr": 0.05, "n_real": "100"},
    {"fpr": float("nan"), "n_real": 100}, {"fpr": 1.5, "n_real": 100}, {"fpr": -0.1, "n_real": 100},
    {"fpr": 0.05, "n_real": 0}, {"fpr": 0.05, "n_real": -3}, {"fpr": 0.05, "n_real": True},
    {"fpr": True, "n_real": 100}, {"fpr": 0.05, "n_real": 10**12}, {"fpr": 0.05, "n_real": 100.0},
])
def test_a_manifests_implausible_figures_state_no_bound(measured):
    assert measured_upper_bound(measured) is None


def test_a_manifests_figures_state_the_bound_they_support():
    assert measured_upper_bound({"fpr": 7 / 153, "n_real": 153}) == fpr_upper_bound(7, 153, 0.95)
    assert measured_upper_bound({"fpr": 0, "n_real": 1_000_000}) == pytest.approx(3.0e-6, rel=0.01)


def test_rates_and_confidences_outside_zero_to_one_are_refused():
    for a, c in ((0.0, 0.95), (1.0, 0.95), (0.05, 0.0), (0.05, 1.0)):
        with pytest.raises(ValueError):
            allowed_false_positives(100, a, c)
    with pytest.raises(ValueError):
        fpr_upper_bound(5, 3)
