"""Fusion of branch probabilities into one verdict: plain functions, and :class:`Fusion`, which binds them to a
bundle's rule and branch thresholds (the one place a probability becomes a verdict).

The AlignGemini paper fuses with an OR rule: an image is fake if the pixel expert says fake OR the VLM
says fake. Its consequence, used by the budget planner: once the pixel expert says fake, the VLM cannot
change the verdict, so it need not run. :func:`can_change_verdict` states that for every rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from aligngemini_sdk.manifest import FusionSpec, Manifest


def fuse(spec: FusionSpec, pixel: float | None, semantic: float | None,
         t_pixel: float = 0.5, t_semantic: float = 0.5) -> tuple[bool, float]:
    """Return ``(is_fake, score)`` from the branch probabilities (None = branch did not run).

    - ``or``: fake if any branch that ran is above its threshold; score = max probability.
    - ``and``: fake only if every branch that ran is above its threshold; score = min probability.
    - ``mean``: weighted mean of the probabilities that ran, against ``spec.threshold``.
    - ``logistic``: sigmoid(w_pixel * logit(pixel) + w_semantic * logit(semantic) + bias) against
      ``spec.threshold``: a fusion whose weights were learned on validation data; with one branch, its own verdict.
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
    if spec.rule == "logistic":
        if pixel is None or semantic is None:
            p, t = votes[0]
            return p > t, p
        z = spec.weights.get("pixel", 1.0) * _logit(pixel) + spec.weights.get("semantic", 1.0) * _logit(semantic)
        score = _sigmoid(z + spec.bias)
        return score > spec.threshold, score
    if spec.rule == "pixel_only":
        p, t = votes[0]
        return p > t, p
    raise ValueError(f"unknown fusion rule {spec.rule!r}")


def _logit(p: float, eps: float = 1e-7) -> float:
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def can_change_verdict(spec: FusionSpec, pixel_says_fake: bool) -> bool:
    """Whether running the semantic branch could still change the verdict, given the pixel verdict.

    OR: a pixel 'fake' is final. AND: a pixel 'real' is final. mean, logistic: always open. pixel_only: never.
    """
    if spec.rule == "or":
        return not pixel_says_fake
    if spec.rule == "and":
        return pixel_says_fake
    return spec.rule in ("mean", "logistic")


def label_for(is_fake: bool) -> str:
    return "fake" if is_fake else "real"


@dataclass(frozen=True)
class Fusion:
    """A bundle's fusion rule with the thresholds of its branches."""

    spec: FusionSpec
    t_pixel: float = 0.5
    t_semantic: float = 0.5

    @classmethod
    def of(cls, manifest: Manifest, operating_point: str | None = None) -> Fusion:
        """The bundle's fusion at an operating point (``None``: the bundle's default point, else its own
        thresholds); a point's thresholds replace the ones it names. Unknown names raise ValueError."""
        op = manifest.operating_point(operating_point)
        t_pixel = manifest.pixel.threshold if manifest.pixel else 0.5
        t_semantic = manifest.semantic.threshold if manifest.semantic else 0.5
        spec = manifest.fusion
        if op is not None:
            t_pixel = t_pixel if op.pixel is None else op.pixel
            t_semantic = t_semantic if op.semantic is None else op.semantic
            spec = spec if op.fusion is None else replace(spec, threshold=op.fusion)
        return cls(spec, t_pixel, t_semantic)

    def semantic_can_change(self, p_pixel: float | None) -> bool:
        """Whether the semantic branch could still change the verdict after the pixel branch gave ``p_pixel``
        (None: the pixel branch did not run, so the semantic branch decides)."""
        return p_pixel is None or can_change_verdict(self.spec, p_pixel > self.t_pixel)

    @property
    def semantic_always_counts(self) -> bool:
        """Whether the semantic branch's answer is read whatever the pixel branch says (logistic, mean)."""
        return can_change_verdict(self.spec, True) and can_change_verdict(self.spec, False)

    def __call__(self, pixel: float | None, semantic: float | None) -> tuple[bool, float]:
        """``(is_fake, score)`` from the branch probabilities (None = the branch did not run)."""
        return fuse(self.spec, pixel, semantic, self.t_pixel, self.t_semantic)
