"""The budget planner: the pixel branch always runs; the VLM only when available, allowed, useful and in time."""

import pytest

from aligngemini_sdk.budget import MIN_MEASURED, LatencyTracker, percentile, plan_semantic

BASE = dict(available=True, power="full", can_change=True, budget_ms=None, elapsed_ms=5.0, predicted_p90_ms=100.0)


def plan(**kw):
    return plan_semantic(**{**BASE, **kw})


def test_runs_without_budget_when_it_can_change_the_verdict():
    p = plan()
    assert p.run and p.skip_reason is None


def test_unavailable():
    assert plan(available=False).skip_reason == "unavailable"


def test_low_power_never_runs_the_vlm():
    assert plan(power="low").skip_reason == "power"
    assert plan(power="low", budget_ms=1e9).skip_reason == "power"


def test_balanced_power_caps_predicted_latency():
    assert plan(power="balanced", predicted_p90_ms=100.0).run
    assert plan(power="balanced", predicted_p90_ms=5000.0).skip_reason == "power"
    assert plan(power="balanced", predicted_p90_ms=None).skip_reason == "power"


def test_decided_when_pixel_verdict_is_final():
    assert plan(can_change=False).skip_reason == "decided"


def test_budget_uses_time_left_not_total():
    assert plan(budget_ms=110.0, elapsed_ms=5.0, predicted_p90_ms=100.0).run  # 105 left >= 100
    p = plan(budget_ms=110.0, elapsed_ms=15.0, predicted_p90_ms=100.0)  # 95 left < 100
    assert p.skip_reason == "budget" and "95.0 ms left" in p.detail


def test_no_estimate_with_a_budget_does_not_gamble():
    p = plan(budget_ms=1e6, predicted_p90_ms=None)
    assert p.skip_reason == "budget" and "warmup" in p.detail


def test_order_of_reasons():
    # unavailable beats power beats decided beats budget
    assert plan(available=False, power="low", can_change=False, budget_ms=1).skip_reason == "unavailable"
    assert plan(power="low", can_change=False, budget_ms=1).skip_reason == "power"
    assert plan(can_change=False, budget_ms=1).skip_reason == "decided"


def test_invalid_power():
    with pytest.raises(ValueError):
        plan(power="turbo")


def test_tracker_prefers_measurements_over_profile_once_enough():
    t = LatencyTracker({"semantic/q4": 500.0})
    assert t.p90("semantic/q4") == 500.0
    for _ in range(MIN_MEASURED - 1):
        t.record("semantic/q4", 50.0)
    assert t.p90("semantic/q4") == 500.0  # not enough samples yet
    t.record("semantic/q4", 50.0)
    assert t.p90("semantic/q4") == pytest.approx(50.0)
    assert t.p90("unknown") is None


def test_percentile():
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([10.0], 90) == 10.0
    assert percentile(list(range(101)), 90) == pytest.approx(90)


CONC = dict(semantic_is_classifier=True, semantic_always_counts=True, power="full", cores=2, threads=None)


def together(**kw):
    from aligngemini_sdk.budget import plan_concurrency

    return plan_concurrency(**{**CONC, **kw})


def test_two_onnx_branches_whose_answers_always_count_run_together_on_half_the_cores_each():
    assert together() == together(power="balanced")
    c = together()
    assert c.together and c.threads_per_branch == 1 and c.workers == 2
    c8 = together(cores=8)
    assert c8.together and c8.threads_per_branch == 4 and c8.workers == 2
    assert together(cores=8, threads=2).threads_per_branch == 2  # the user's thread count is per branch


def test_a_call_that_runs_the_pixel_branch_alone_gets_every_core_unless_the_user_set_threads():
    c = together()
    assert c.alone_threads is None and c.pixel_alone_session  # a second pixel session, on every core
    u = together(cores=8, threads=2)
    assert u.alone_threads == 2 and not u.pixel_alone_session  # the user's threads: the same session serves
    assert not together(power="low").pixel_alone_session  # one after the other: already on every core


@pytest.mark.parametrize(("kw", "why"), [
    ({"semantic_is_classifier": False}, "VLM"),  # a VLM takes every core for seconds: after the pixel branch
    ({"semantic_always_counts": False}, "does not always read"),  # OR/AND: the pixel verdict may make it moot
    ({"power": "low"}, "low"),
    ({"cores": 1}, "one usable core"),
])
def test_otherwise_the_branches_run_one_after_the_other_on_every_core(kw, why):
    c = together(**kw)
    assert not c.together and c.threads_per_branch is None and why in c.reason
