"""The latency-budget planner: decide whether the semantic (VLM) branch runs for one image.

The pixel branch always runs. The VLM runs only when, in this order of checks:

1. it exists and loaded (else ``unavailable``);
2. the power mode allows it (``low`` never runs it; ``balanced`` skips it when its predicted p90 exceeds
   the balanced cap) (else ``power``);
3. its answer can still change the verdict (under OR: the pixel branch said real) (else ``decided``);
4. the time left in the budget covers its predicted p90 latency on this device (else ``budget``).
   The prediction comes from latencies measured in this process once there are enough, else from the
   bundle's device profile. With a budget but no prediction at all, the planner does not gamble: it
   skips with ``budget`` and says so (``Detector.warmup()`` or ``aligngemini bench --write-profile``
   provide one).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from aligngemini_sdk.choice import Choice
from aligngemini_sdk.result import SkipReason


class PowerMode(Choice):
    """``full``: the VLM runs whenever it can change the verdict in time; ``balanced``: only when its predicted p90
    is under :data:`~aligngemini_sdk.budget.BALANCED_MAX_MS`; ``low``: never (pixel branch only)."""

    FULL = "full"
    BALANCED = "balanced"
    LOW = "low"

    @classmethod
    def invalid(cls, value: object) -> Exception:
        return ValueError(f"power must be one of {cls.names()}, got {value!r}")


#: the power modes' values, in order
POWER_MODES = PowerMode.names()


def check_budget_ms(budget_ms: float | None) -> float | None:
    """The one validation of a latency budget, for the options and every per-call override: None (no deadline)
    or a finite number of milliseconds above zero."""
    if budget_ms is None:
        return None
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or not math.isfinite(budget_ms) \
            or budget_ms <= 0:
        raise ValueError(f"budget_ms must be a finite number of milliseconds > 0 (or None), got {budget_ms!r}")
    return float(budget_ms)


#: Under ``power="balanced"`` the VLM is skipped when its predicted p90 exceeds this (ms).
BALANCED_MAX_MS = 1500.0
#: Measured samples needed before in-process measurements override the device profile.
MIN_MEASURED = 3


@dataclass(frozen=True)
class Plan:
    run: bool
    skip_reason: SkipReason | None = None
    detail: str = ""
    predicted_ms: float | None = None


def plan_semantic(*, available: bool, power: str, can_change: bool, budget_ms: float | None,
                  elapsed_ms: float, predicted_p90_ms: float | None,
                  balanced_max_ms: float = BALANCED_MAX_MS) -> Plan:
    """Pure decision function; all inputs injected, so every branch of it is testable. ``power`` is a
    :class:`~aligngemini_sdk.options.PowerMode` (or its value: the enum compares equal to it), validated by the
    options."""
    power = PowerMode.parse(power)
    if not available:
        return Plan(False, "unavailable", "bundle has no semantic branch or it failed to load")
    if power == "low":
        return Plan(False, "power", "power='low' never runs the VLM", predicted_p90_ms)
    if power == "balanced" and (predicted_p90_ms is None or predicted_p90_ms > balanced_max_ms):
        what = "unknown" if predicted_p90_ms is None else f"{predicted_p90_ms:.0f} ms"
        return Plan(False, "power", f"power='balanced' caps the VLM at {balanced_max_ms:.0f} ms p90 (predicted {what})",
                    predicted_p90_ms)
    if not can_change:
        return Plan(False, "decided", "the pixel verdict is final under the fusion rule", predicted_p90_ms)
    if budget_ms is not None:
        left = budget_ms - elapsed_ms
        if predicted_p90_ms is None:
            return Plan(False, "budget", "no latency estimate for the VLM on this device "
                                         "(run Detector.warmup() or `aligngemini bench --write-profile`)")
        if predicted_p90_ms > left:
            return Plan(False, "budget", f"predicted p90 {predicted_p90_ms:.1f} ms > {left:.1f} ms left",
                        predicted_p90_ms)
    return Plan(True, None, "", predicted_p90_ms)


@dataclass(frozen=True)
class Concurrency:
    """How the detector schedules its two branches: ``together``: the semantic branch runs beside the pixel branch
    (in ``workers`` background threads), each session on ``threads_per_branch`` of the cores; else one after the
    other, each on every core. ``alone_threads``: the pixel branch's threads in a call that runs it alone (a budget
    or power mode the planner answers without the semantic branch) -- every core (None) unless the user set
    ``threads``; when that differs from ``threads_per_branch`` the pixel branch has a second session for such calls."""

    together: bool
    threads_per_branch: int | None
    workers: int = 0
    reason: str = ""
    alone_threads: int | None = None

    @property
    def pixel_alone_session(self) -> bool:
        """Whether a call that runs the pixel branch alone needs a session of its own (on ``alone_threads``)."""
        return self.together and self.alone_threads != self.threads_per_branch


def plan_concurrency(*, semantic_is_classifier: bool, semantic_always_counts: bool, power: str, cores: int,
                     threads: int | None) -> Concurrency:
    """Pure decision function. Both branches run at once when the semantic branch is an ONNX classifier
    (milliseconds; a VLM takes seconds and every core), the fusion reads its answer whatever the pixel branch says
    (logistic or mean: nothing runs in vain), the power mode runs it, and there are cores to share. Measured on a
    2-core Xeon (benchmarks/reports/branch_concurrency/): the default's two Lite0 branches one after the other on 2
    threads each, 13.3-14.2 ms p50; side by side on 1 thread each, 8.9-9.2 ms -- small operators pay thread hand-offs that
    one thread never does. ``threads`` (the user's) is kept per branch. The pixel branch alone is another matter: on a
    2-core AMD EPYC Zen 3 (AVX2; benchmarks/reports/branch_concurrency/amd-epyc-avx2.md) ``detect()`` under a budget
    that dropped the semantic branch took 12.9 ms with the pixel branch on 2 threads and 17.8 ms on 1, so such a call
    runs it on a session of its own on every core."""
    power = PowerMode.parse(power)
    why = ("the semantic branch is a VLM or absent" if not semantic_is_classifier
           else "the fusion does not always read the semantic branch" if not semantic_always_counts
           else "power='low' never runs the semantic branch" if power == "low"
           else "one usable core" if cores < 2 and threads is None else "")
    if why:
        return Concurrency(False, threads, 0, why, alone_threads=threads)
    per_branch = threads or max(1, cores // 2)
    return Concurrency(True, per_branch, max(1, cores // per_branch), "two ONNX branches share the cores",
                       alone_threads=threads)


class LatencyTracker:
    """Per-branch rolling latencies measured in this process, with a profile fallback.

    Thread-safe; the detector records every branch run here and asks it for the p90 to plan with.
    """

    def __init__(self, profile_p90: dict[str, float] | None = None, window: int = 64) -> None:
        self._profile = dict(profile_p90 or {})
        self._samples: dict[str, deque[float]] = {}
        self._window = window
        self._lock = threading.Lock()

    def record(self, key: str, ms: float) -> None:
        with self._lock:
            self._samples.setdefault(key, deque(maxlen=self._window)).append(float(ms))

    def samples(self, key: str) -> list[float]:
        with self._lock:
            return list(self._samples.get(key, ()))

    def p90(self, key: str) -> float | None:
        s = self.samples(key)
        if len(s) >= MIN_MEASURED:
            return percentile(s, 90)
        return self._profile.get(key)

    def set_profile(self, key: str, p90_ms: float) -> None:
        with self._lock:
            self._profile[key] = float(p90_ms)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile without numpy (used on the hot path with tiny lists)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
