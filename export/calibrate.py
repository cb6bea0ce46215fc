"""Calibrate a bundle's decision on labelled data: learn a logistic fusion of its two branches, and choose
operating points -- thresholds for target real-photo false-positive rates (``fpr1``, ``fpr5``, ``fpr10``).

    aligngemini export calibrate BUNDLE --data VAL.csv --fpr 1,5,10 --default fpr5 [--fusion logistic] [--confidence 95]

Operating points are chosen, unless told otherwise, so that the false-positive rate on further photos like the real
ones given stays within the target **with 95 % confidence** (:mod:`aligngemini_sdk.fpr_bound`): that needs at least
299 real images for ``fpr1``, 59 for ``fpr5`` and 29 for ``fpr10``, and fewer are refused by name before any image
is run. ``--confidence 0`` (``confidence=None``) takes the empirical quantile instead, which calls the target share
of *these* images fake and promises nothing beyond them. Every point records the upper bound its data supports.

Both read the branches' probabilities from the bundle's own runtimes on ``--data`` (every branch run on every
image: no budget, provenance off) and write only the manifest's ``fusion`` section, so the model files, their
checksums and the bundle id stay as they are. Choose on validation data that is not the data you report: the
``measured`` figures recorded with each point are in-sample. A camera maker can calibrate on its own photos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.bundle import Bundle, read_manifest, write_manifest
from aligngemini_sdk.dataset import load_collection
from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.fpr_bound import BOUND_CONFIDENCE, allowed_false_positives, fpr_upper_bound, min_real_images
from aligngemini_sdk.fusion import Fusion
from aligngemini_sdk.manifest import Manifest, OperatingPoint
from aligngemini_sdk.progress import track

DEFAULT_FPRS = (0.01, 0.05, 0.10)


@dataclass
class BranchScores:
    """Each image's label and branch probabilities (None where the bundle has no such branch)."""

    labels: np.ndarray
    pixel: np.ndarray | None
    semantic: np.ndarray | None
    data: str


def point_name(fpr: float) -> str:
    return f"fpr{100 * fpr:g}"


def branch_scores(bundle: str | os.PathLike[str], data: str, *, threads: int | None = None) -> BranchScores:
    """Run every branch of the bundle on every image of a labelled collection (DIR or CSV)."""
    from aligngemini_sdk.detector import Detector, DetectorOptions

    samples = load_collection(data)
    if not samples:
        raise ExportError(f"no labelled images in {data}")
    det = Detector(bundle, DetectorOptions(threads=threads, provenance=False))
    try:
        pix, sem = [], []
        for s in track(samples, desc="calibration images"):
            r = det.detect(s.path)
            pix.append(r.pixel.probability)
            sem.append(_semantic_probability(det, s.path, r.semantic.probability))
    finally:
        det.close()
    return BranchScores(labels=np.asarray([s.label for s in samples]),
                        pixel=None if det.pixel is None else np.asarray(pix, np.float64),
                        semantic=None if det.semantic is None else np.asarray(sem, np.float64), data=os.fspath(data))


def _semantic_probability(det: Any, path: Path, ran: float | None) -> float | None:
    """The semantic branch's probability even where the planner skipped it (e.g. OR fusion, pixel said fake)."""
    if ran is not None or det.semantic is None:
        return ran
    from aligngemini_sdk.decode_plan import decode_for_branches
    from aligngemini_sdk.image import read_image_file

    label = os.fspath(path)
    inputs = decode_for_branches(read_image_file(path, label), det.decode_plan, name=label)
    return float(det.semantic.predict_one(inputs.for_branch("semantic")))


def fit_logistic(scores: BranchScores, l2: float = 1e-3, steps: int = 200,
                 sample_weight: np.ndarray | None = None) -> tuple[dict[str, float], float]:
    """Weights and bias of sigmoid(w_p * logit(pixel) + w_s * logit(semantic) + b), by Newton's method on the
    class-balanced log-loss (both classes weigh the same, whatever their counts; ``sample_weight`` shares each
    class's half among its images, e.g. equally per source repository)."""
    if scores.pixel is None or scores.semantic is None:
        raise ExportError("a logistic fusion needs a bundle with both a pixel and a semantic branch")
    x = np.stack([logits(scores.pixel), logits(scores.semantic), np.ones(len(scores.labels))], axis=1)
    y = scores.labels.astype(np.float64)
    if y.min() == y.max():
        raise ExportError("fitting a fusion needs real and fake images")
    w_cls = class_balanced(y, sample_weight)
    beta = np.zeros(3)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (w_cls * (p - y)) + l2 * np.r_[beta[:2], 0.0]
        hess = (x * (w_cls * p * (1 - p))[:, None]).T @ x + l2 * np.diag([1.0, 1.0, 0.0])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return {"pixel": float(beta[0]), "semantic": float(beta[1])}, float(beta[2])


def class_balanced(y: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Per-image loss weights: each class sums to 1/2, shared among its images by ``sample_weight`` (equally when
    None)."""
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    fake = y > 0
    return np.where(fake, 0.5 * w / w[fake].sum(), 0.5 * w / w[~fake].sum())


def logits(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """logit(p) with p clipped to [eps, 1 - eps] (the fusion's own clip)."""
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def choose_points(manifest: Manifest, scores: BranchScores, fprs: Sequence[float],
                  confidence: float | None = None) -> dict[str, OperatingPoint]:
    """One operating point per target FPR. ``confidence`` None: the thresholds that call at most that share of these
    real images fake (the empirical quantile: on further photos its rate is above the target about half the time);
    a level such as 0.95: the thresholds whose rate on further photos like these stays within the target with that
    confidence (:mod:`aligngemini_sdk.fpr_bound`); ExportError when there are too few real images for that."""
    real = scores.labels == 0
    out = {}
    for fpr, allowed in allowances(int(real.sum()), fprs, confidence).items():
        point = _point_for(manifest, scores, real, allowed)
        out[point_name(fpr)] = replace(point, target_fpr=fpr, measured=_measure(manifest, point, scores, confidence))
    return out


def allowances(n_real: int, fprs: Sequence[float], confidence: float | None) -> dict[float, int]:
    """Per target FPR, how many of ``n_real`` real images its operating point may call fake (the empirical quantile's
    rank when ``confidence`` is None); ExportError for a target outside (0, 1), or naming every point that too few
    real images cannot support at ``confidence``."""
    if n_real <= 0:
        raise ExportError("choosing operating points needs real images")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ExportError(f"a confidence must be in (0, 1) (or None: the empirical quantile), got {confidence}")
    for fpr in fprs:
        if not 0.0 < fpr < 1.0:
            raise ExportError(f"a target false-positive rate must be in (0, 1), got {fpr}")
    if confidence is None:
        return {fpr: _empirical_allowance(n_real, fpr) for fpr in fprs}
    out = {fpr: allowed_false_positives(n_real, fpr, confidence) for fpr in fprs}
    short = [f"{point_name(f)} needs {min_real_images(f, confidence)}" for f, a in out.items() if a is None]
    if short:
        raise ExportError(
            f"too few real images ({n_real}) for a false-positive rate kept with {confidence:.0%} confidence: "
            f"{', '.join(short)}. Add real photos, drop those points, or choose the empirical quantile (confidence "
            "None, --confidence 0), which promises nothing beyond these images")
    return {f: a for f, a in out.items() if a is not None}


def _point_for(manifest: Manifest, scores: BranchScores, real: np.ndarray, allowed: int) -> OperatingPoint:
    rule, pix, sem = manifest.fusion.rule, scores.pixel, scores.semantic
    if pix is not None and sem is not None and rule in ("mean", "logistic"):
        fused = np.asarray([Fusion(manifest.fusion)(p, s)[1] for p, s in zip(pix, sem)])
        return OperatingPoint(fusion=threshold_allowing(fused[real], allowed))
    if pix is not None and (sem is None or rule == "pixel_only"):
        return OperatingPoint(pixel=threshold_allowing(pix[real], allowed))
    if sem is not None and pix is None:
        return OperatingPoint(semantic=threshold_allowing(sem[real], allowed))
    assert pix is not None and sem is not None
    if rule != "or":
        raise ExportError(f"operating points for the {rule!r} rule are not supported; use or, mean or logistic")
    return _or_point(pix[real], sem[real], allowed)


def threshold_allowing(real_scores: np.ndarray, allowed: int) -> float:
    """The smallest threshold t that calls at most ``allowed`` of these real scores fake (score > t)."""
    s = np.sort(real_scores)
    return float(np.clip(s[len(s) - 1 - allowed], 0.0, 1.0))


def threshold_for_fpr(real_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold t with (share of real scores > t) <= fpr."""
    return threshold_allowing(real_scores, _empirical_allowance(len(real_scores), fpr))


def _empirical_allowance(n: int, fpr: float) -> int:
    """The empirical quantile's count, as the recipes have always computed it (their thresholds stay bit for bit)."""
    return n - max(1, math.ceil((1.0 - fpr) * n))


def _or_point(pix: np.ndarray, sem: np.ndarray, allowed: int) -> OperatingPoint:
    """Under OR an image is fake when either branch says so: give both branches the same individual allowance, the
    largest whose combined count of real images called fake stays within ``allowed``."""
    best = OperatingPoint(pixel=threshold_allowing(pix, 0), semantic=threshold_allowing(sem, 0))
    for each in range(allowed // 2, allowed + 1):
        tp, ts = threshold_allowing(pix, each), threshold_allowing(sem, each)
        if int(np.sum((pix > tp) | (sem > ts))) <= allowed:
            best = OperatingPoint(pixel=tp, semantic=ts)
    return best


def _measure(manifest: Manifest, point: OperatingPoint, scores: BranchScores,
             confidence: float | None) -> dict[str, Any]:
    """The point's verdicts on the data it was chosen on, and the upper bound on its real-photo FPR they support (at
    ``confidence``, or at 95 % for an empirical point)."""
    m = replace(manifest, fusion=replace(manifest.fusion, operating_points={"x": point}, default_operating_point="x"))
    fusion = Fusion.of(m)
    pix = scores.pixel if scores.pixel is not None else [None] * len(scores.labels)
    sem = scores.semantic if scores.semantic is not None else [None] * len(scores.labels)
    verdicts = np.asarray([fusion(p, s)[0] for p, s in zip(pix, sem)])
    real, fake = scores.labels == 0, scores.labels == 1
    level = BOUND_CONFIDENCE if confidence is None else confidence
    return {"fpr": float(verdicts[real].mean()), "tpr": float(verdicts[fake].mean()) if fake.any() else None,
            "n_real": int(real.sum()), "n_fake": int(fake.sum()), "data": scores.data, "in_sample": True,
            "confidence": confidence, "fpr_upper": fpr_upper_bound(int(verdicts[real].sum()), int(real.sum()), level),
            "fpr_upper_confidence": level}


def calibrate(bundle: str | os.PathLike[str], data: str, *, fprs: Sequence[float] = DEFAULT_FPRS,
              default: str | None = "fpr5", fusion: str | None = None, threads: int | None = None,
              confidence: float | None = BOUND_CONFIDENCE) -> Manifest:
    """Measure the branches on ``data``, optionally fit a new fusion rule (``logistic``), choose the operating
    points (``confidence``: see :func:`choose_points`; too few real images fail before any image is run), and
    rewrite the bundle directory's manifest."""
    root = Bundle.open(bundle).root
    if Path(bundle).resolve() != root:
        raise ExportError("calibrate a bundle directory (a .tar is unpacked into the cache, not rewritten)")
    allowances(sum(s.label == 0 for s in load_collection(data)), fprs, confidence)
    manifest = read_manifest(root)
    scores = branch_scores(root, data, threads=threads)
    spec = manifest.fusion
    if fusion == "logistic":
        weights, bias = fit_logistic(scores)
        spec = replace(spec, rule="logistic", weights=weights, bias=bias, threshold=0.5)
    elif fusion is not None:
        spec = replace(spec, rule=fusion)
    manifest = replace(manifest, fusion=spec)
    points = choose_points(manifest, scores, fprs, confidence)
    if default is not None and default not in points:
        raise ExportError(f"--default {default!r} is not one of the chosen points {sorted(points)}")
    manifest = replace(manifest, fusion=replace(spec, operating_points=points, default_operating_point=default))
    write_manifest(root, manifest)
    return manifest

