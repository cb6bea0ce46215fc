"""Fusion of branch probabilities into one verdict, as plain functions.

The AlignGemini paper fuses with an OR rule: an image is fake if the pixel expert says fake OR the VLM
says fake. Its consequence, used by the budget planner: once the pixel expert says fake, the VLM cannot
change the verdict, so it need not run. :func:`can_change_verdict` states that for every rule.
"""

from __future__ import annotations

from aligngemini_sdk.manifest import FusionSpec


def fuse(spec: FusionSpec, pixel: float | None, semantic: float | None,
         t_pixel: float = 0.5, t_semantic: float = 0.5) -> tuple[bool, float]:
    """Return ``(is_fake, score)`` from the branch probabilities (None = branch did not run).

    - ``or``: fake if any branch that ran is above its threshold; score = max probability.
    - ``and``: fake only if every branch that ran is above its threshold; score = min probability.
    - ``mean``: weighted mean of the probabilities that ran, against ``spec.threshold``.
    - ``pixel_only``: the pixel branch alone.
    A branch that did not run abstains: with one branch, every rule reduces to that branch's verdict.
    """
    votes = [(p, t) for p, t in ((pixel, t_pixel), (semantic, t_semantic)) if p is not None]
    if spec.rule == "pixel_only" or semantic is None:
        votes = [(pixel, t_pixel)] if pixel is not None else votes
    if not votes:
        raise ValueError("no branch produced a probability")
    if spec.rule == "or":
        return any(p > t for p, t in votes), max(p for p, _ in votes)
    if spec.rule == "and":
        return all(p > t for p, t in votes), min(p for p, _ in votes)
    if spec.rule == "mean":
        weights = [spec.weights.get("pixel", 0.5)] * (pixel is not None) + \
                  [spec.weights.get("semantic", 0.5)] * (semantic is not None)
        probs = [p for p in (pixel, semantic) if p is not None]
        score = sum(w * p for w, p in zip(weights, probs)) / max(sum(weights), 1e-12)
        return score > spec.threshold, score
    if spec.rule == "pixel_only":
        p, t = votes[0]
        return p > t, p
    raise ValueError(f"unknown fusion rule {spec.rule!r}")


def can_change_verdict(spec: FusionSpec, pixel_says_fake: bool) -> bool:
    """Whether running the semantic branch could still change the verdict, given the pixel verdict.

    OR: a pixel 'fake' is final. AND: a pixel 'real' is final. mean: always open. pixel_only: never.
    """
    if spec.rule == "or":
        return not pixel_says_fake
    if spec.rule == "and":
        return pixel_says_fake
    return spec.rule == "mean"


def label_for(is_fake: bool) -> str:
    return "fake" if is_fake else "real"
