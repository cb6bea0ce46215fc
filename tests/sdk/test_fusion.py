"""Fusion is the paper's OR rule by default; every rule's truth table, and when the VLM can still matter."""

import pytest

from aligngemini_sdk.fusion import can_change_verdict, fuse
from aligngemini_sdk.manifest import FusionSpec

OR, AND, MEAN, PIX = FusionSpec("or"), FusionSpec("and"), FusionSpec("mean"), FusionSpec("pixel_only")


@pytest.mark.parametrize(("pixel", "semantic", "expected"), [
    (0.1, 0.1, False), (0.9, 0.1, True), (0.1, 0.9, True), (0.9, 0.9, True),
    (0.1, None, False), (0.9, None, True),
])
def test_or_rule_truth_table(pixel, semantic, expected):
    is_fake, score = fuse(OR, pixel, semantic)
    assert is_fake is expected
    assert score == max(p for p in (pixel, semantic) if p is not None)


@pytest.mark.parametrize(("pixel", "semantic", "expected"), [
    (0.1, 0.1, False), (0.9, 0.1, False), (0.1, 0.9, False), (0.9, 0.9, True), (0.9, None, True),
])
def test_and_rule_truth_table(pixel, semantic, expected):
    assert fuse(AND, pixel, semantic)[0] is expected


def test_thresholds_are_per_branch():
    assert fuse(OR, 0.6, 0.6, t_pixel=0.7, t_semantic=0.7)[0] is False
    assert fuse(OR, 0.6, 0.8, t_pixel=0.7, t_semantic=0.7)[0] is True
    assert fuse(OR, 0.5, None)[0] is False  # strictly greater than the threshold


def test_mean_rule_weights():
    spec = FusionSpec("mean", weights={"pixel": 3.0, "semantic": 1.0}, threshold=0.5)
    is_fake, score = fuse(spec, 0.8, 0.0)
    assert score == pytest.approx(0.6) and is_fake


def test_pixel_only_ignores_semantic():
    assert fuse(PIX, 0.2, 0.99) == (False, 0.2)


def test_no_probability_is_an_error():
    with pytest.raises(ValueError):
        fuse(OR, None, None)


def test_can_change_verdict():
    # Under OR, a pixel 'fake' is final: the VLM cannot change it. A pixel 'real' can still be flipped.
    assert can_change_verdict(OR, pixel_says_fake=True) is False
    assert can_change_verdict(OR, pixel_says_fake=False) is True
    assert can_change_verdict(AND, pixel_says_fake=False) is False
    assert can_change_verdict(AND, pixel_says_fake=True) is True
    assert can_change_verdict(MEAN, pixel_says_fake=True) is True
    assert can_change_verdict(PIX, pixel_says_fake=False) is False


def test_logistic_rule_combines_logits_with_learned_weights():
    import math

    spec = FusionSpec("logistic", weights={"pixel": 2.0, "semantic": 0.5}, bias=-1.0, threshold=0.5)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    is_fake, score = fuse(spec, 0.8, 0.3)
    assert score == pytest.approx(1 / (1 + math.exp(-(2.0 * logit(0.8) + 0.5 * logit(0.3) - 1.0))))
    assert is_fake == (score > 0.5)
    assert fuse(spec, 0.0, 1.0)[1] == pytest.approx(1 / (1 + math.exp(-(2.0 * logit(1e-7) + 0.5 * logit(1 - 1e-7) - 1))))
    # one branch alone gives that branch's own verdict at its own threshold
    assert fuse(spec, 0.7, None, t_pixel=0.6) == (True, 0.7) and fuse(spec, None, 0.4, t_semantic=0.5) == (False, 0.4)
    assert can_change_verdict(spec, True) and can_change_verdict(spec, False)


def test_an_operating_point_replaces_the_thresholds_it_names():
    from dataclasses import replace

    from aligngemini_sdk.fusion import Fusion
    from aligngemini_sdk.manifest import Manifest, OperatingPoint

    spec = FusionSpec("logistic", threshold=0.5, operating_points={
        "fpr1": OperatingPoint(fusion=0.9, target_fpr=0.01), "fpr10": OperatingPoint(fusion=0.3, target_fpr=0.1)})
    m = Manifest(bundle_id="ag-x", name="x", pixel=None, semantic=None, fusion=spec)
    assert Fusion.of(m).spec.threshold == 0.5  # no default point: the fusion's own threshold
    assert Fusion.of(m, "fpr1").spec.threshold == 0.9 and Fusion.of(m, "fpr10").spec.threshold == 0.3
    assert Fusion.of(replace(m, fusion=replace(spec, default_operating_point="fpr1"))).spec.threshold == 0.9
    with pytest.raises(ValueError, match=r"no operating point 'fpr2' \(has: fpr1, fpr10\)"):
        Fusion.of(m, "fpr2")
