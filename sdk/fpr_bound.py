"""How far a false-positive rate measured on n real photos can be trusted, and thresholds that keep a target rate
with a stated confidence.

A threshold set at the empirical (1 - a) quantile of n real photos' scores calls a share a of *those* photos fake;
on further photos of the same kind its rate is above a about half the time, and with few photos far above it (24
photos cannot tell 1 % from 4 %). The alternative used here is exact and distribution-free: if the n photos and the
later ones are exchangeable (drawn alike), a threshold that calls at most ``x`` of the n fake has a true rate above
``a`` with probability P(Binomial(n, a) <= x) (the order-statistic argument of Vovk 2012, "Conditional validity of
inductive conformal predictors"; the same number as a one-sided Clopper-Pearson bound). So the largest ``x`` with
that probability at most 1 - confidence gives a threshold whose rate is <= ``a`` with that confidence, and no such
``x`` exists below ``min_real_images(a, confidence)`` photos. Exchangeability is the whole assumption: photos of
another camera pipeline or another kind of scene are not covered by it, which is why a vendor calibrates on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: the confidence of the bounds the SDK states unless told, and of ``export calibrate``'s operating points by default
BOUND_CONFIDENCE = 0.95


def _check(fpr: float, confidence: float) -> None:
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"a false-positive rate must be in (0, 1), got {fpr}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"a confidence must be in (0, 1), got {confidence}")


def _log_pmf(n: int, p: float, first: int, last: int) -> np.ndarray:
    """log P(Binomial(n, p) = i) for i = first..last (the binomial coefficients as running sums of logs)."""
    i = np.arange(first, last + 1, dtype=np.float64)
    start = math.lgamma(n + 1) - math.lgamma(first + 1) - math.lgamma(n - first + 1)
    log_choose = start + np.concatenate([[0.0], np.cumsum(np.log(n - i[:-1]) - np.log1p(i[:-1]))])
    return log_choose + i * math.log(p) + (n - i) * math.log1p(-p)


def _negligible_below(n: int, p: float, x: int) -> int:
    """An index below which P(Binomial(n, p) = i) adds nothing at float precision to the mass up to ``x``: 40
    standard deviations under the lower of ``x`` and the mean (the terms fall at least that fast below both), so
    a CDF costs O(sqrt(n)) terms, not O(x)."""
    return max(0, math.floor(min(x, n * p) - 40.0 * math.sqrt(n * p * (1.0 - p) + 1.0) - 10.0))


def binomial_cdf(x: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= x), exact to float rounding."""
    if x < 0:
        return 0.0
    if x >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp = _log_pmf(n, p, _negligible_below(n, p, x), x)
    top = float(lp.max())
    return min(1.0, math.exp(top) * float(np.exp(lp - top).sum()))


def fpr_upper_bound(false_positives: int, n: int, confidence: float = BOUND_CONFIDENCE) -> float:
    """The largest true rate still plausible after ``false_positives`` of ``n`` real photos were called fake: the
    one-sided Clopper-Pearson bound, P(Binomial(n, bound) <= false_positives) = 1 - confidence."""
    if not 0 <= false_positives <= n or n <= 0:
        raise ValueError(f"{false_positives} false positives of {n} real photos")
    _check(0.5, confidence)
    if false_positives == n:
        return 1.0
    lo, hi = false_positives / n, 1.0
    for _ in range(60):  # the CDF falls as p rises: bisect to float precision
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if binomial_cdf(false_positives, n, mid) > 1.0 - confidence else (lo, mid)
    return hi


def allowed_false_positives(n: int, fpr: float, confidence: float) -> int | None:
    """How many of ``n`` real photos a threshold may call fake while its rate on further photos like them stays
    <= ``fpr`` with ``confidence``: the largest x with P(Binomial(n, fpr) <= x) <= 1 - confidence, or None when even
    x = 0 does not qualify (fewer than ``min_real_images(fpr, confidence)`` photos)."""
    _check(fpr, confidence)
    if n <= 0:
        return None
    upto = min(n, math.ceil(n * fpr + 10.0 * math.sqrt(n * fpr * (1.0 - fpr)) + 10.0))  # the CDF is ~1 by then
    cdf = np.cumsum(np.exp(_log_pmf(n, fpr, 0, upto)))
    x = int(np.searchsorted(cdf, 1.0 - confidence, side="right")) - 1
    return None if x < 0 else x


def min_real_images(fpr: float, confidence: float) -> int:
    """The fewest real photos that can support a rate <= ``fpr`` with ``confidence`` (none of them called fake)."""
    _check(fpr, confidence)
    n = math.ceil(math.log(1.0 - confidence) / math.log1p(-fpr))
    while allowed_false_positives(n, fpr, confidence) is None:  # the log ratio can round a hair either way
        n += 1
    while n > 1 and allowed_false_positives(n - 1, fpr, confidence) is not None:
        n -= 1
    return n


#: the most real images a recorded measurement may claim before ``measured_upper_bound`` declines to compute one
MAX_STATED_IMAGES = 1_000_000


def measured_upper_bound(measured: Mapping[str, Any], confidence: float = BOUND_CONFIDENCE) -> float | None:
    """The upper bound on the real-photo FPR that an operating point's recorded ``measured`` figures (``fpr`` over
    ``n_real`` images, from a manifest, so untrusted) support; None where they are missing or not plausible."""
    fpr, n = measured.get("fpr"), measured.get("n_real")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_STATED_IMAGES:
        return None
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0.0 <= fpr <= 1.0:
        return None
    return fpr_upper_bound(round(fpr * n), n, confidence)
