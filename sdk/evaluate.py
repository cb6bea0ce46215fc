"""Evaluate a bundle on a labelled collection: balanced accuracy, ROC-AUC, accuracy on real and on
fake, per source; as JSON and markdown.

Scales out: images are streamed in chunks to worker processes (one Detector each, one thread each) on
this machine by default, or to Ray actors on a cluster (``backend="ray"``), with the same report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypedDict

from aligngemini_sdk.dataset import Sample, load_collection
from aligngemini_sdk.fpr_bound import BOUND_CONFIDENCE, fpr_upper_bound
from aligngemini_sdk.manifest import Manifest
from aligngemini_sdk.metrics import Intervals, Metrics, binary_metrics, bootstrap_ci, fmt, markdown_table, per_source
from aligngemini_sdk.progress import Progress


@dataclass
class Row:
    path: str
    label: int
    source: str
    pixel: float | None = None
    semantic: float | None = None
    score: float | None = None
    is_fake: bool | None = None
    ms: float | None = None
    error: str | None = None
    #: the detectors' own verdict and score (before provenance), and what provenance said, if it decided
    detector_score: float | None = None
    detector_is_fake: bool | None = None
    provenance: str | None = None


_DET: Any = None


def _init_worker(bundle: str, opts: dict[str, Any]) -> None:
    global _DET
    from aligngemini_sdk.detector import Detector, DetectorOptions

    _DET = Detector(bundle, DetectorOptions(**opts))


#: a unit of work for one worker: (path, label, source) of each sample
Chunk = list[tuple[str, int, str]]


def _run_chunk(chunk: Chunk) -> list[Row]:
    from aligngemini_sdk.errors import AlignGeminiError

    out = []
    for path, label, source in chunk:
        try:
            r = _DET.detect(path)
            out.append(Row(path, label, source, r.pixel.probability, r.semantic.probability, r.score, r.is_fake,
                           r.total_ms, detector_score=r.detector_score, detector_is_fake=r.detector_is_fake,
                           provenance=r.decided_by_provenance))
        except AlignGeminiError as exc:
            out.append(Row(path, label, source, error=f"{type(exc).__name__}: {exc}"))
    return out


def _chunks(samples: Sequence[Sample], size: int) -> Iterator[Chunk]:
    for i in range(0, len(samples), size):
        yield [(os.fspath(s.path), s.label, s.source) for s in samples[i:i + size]]


def run_rows(bundle: str, samples: Sequence[Sample], *, workers: int = 1, backend: str = "local",
             chunk: int = 32, progress: bool | None = None, **opts: Any) -> list[Row]:
    """Detect every sample; returns rows in input order. ``opts`` are DetectorOptions fields; ``backend`` is a key of
    BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: one of {sorted(BACKENDS)}")
    bar = Progress(len(samples), "eval", progress)
    rows: list[Row] = []
    for part in BACKENDS[backend](bundle, _chunks(samples, chunk), max(1, workers), opts):
        rows.extend(part)
        bar.update(len(part))
    bar.close()
    order = {os.fspath(s.path): i for i, s in enumerate(samples)}
    rows.sort(key=lambda r: order.get(r.path, 0))
    return rows


def _run_local(bundle: str, chunks: Iterator[Chunk], workers: int, opts: dict[str, Any]) -> Iterator[list[Row]]:
    """This process (one worker), or ``workers`` spawned processes with one thread each unless told."""
    if workers == 1:
        _init_worker(bundle, opts)
        yield from map(_run_chunk, chunks)
        return
    opts = {**opts, "threads": opts.get("threads") or 1}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(bundle, opts)) as pool:
        yield from pool.map(_run_chunk, chunks)


def _run_ray(bundle: str, chunks: Iterator[Chunk], workers: int, opts: dict[str, Any]) -> Iterator[list[Row]]:
    """``workers`` Ray actors on the cluster the caller (or RAY_ADDRESS) set up; otherwise on a local one, stopped
    after. Parts come back as they finish."""
    from aligngemini_sdk.extras import require

    ray = require("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)

    @ray.remote(num_cpus=opts.get("threads") or 1)
    class _Actor:
        def __init__(self) -> None:
            _init_worker(bundle, opts)

        def run(self, c: Chunk) -> list[Row]:
            return _run_chunk(c)

    try:
        actors = [_Actor.remote() for _ in range(workers)]  # type: ignore[attr-defined]
        pending = [actors[i % len(actors)].run.remote(c) for i, c in enumerate(chunks)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


#: where ``run_rows`` runs the chunks: backend -> (bundle, chunks, workers, DetectorOptions fields) -> parts
BACKENDS: dict[str, Callable[[str, Iterator[Chunk], int, dict[str, Any]], Iterator[list[Row]]]] = {
    "local": _run_local, "ray": _run_ray}


class PointThresholds(TypedDict):
    """The thresholds the verdicts used at an operating point (each branch's, and the fused score's)."""

    pixel: float
    semantic: float
    fusion: float


class PointMetrics(TypedDict):
    """The detectors' verdicts at one of the bundle's operating points (a TypedDict: it is the JSON ``eval.json``
    has always written)."""

    target_fpr: float | None
    #: real images called fake (None without real images)
    fpr: float | None
    #: the largest real-photo FPR those counts leave plausible (one-sided 95 %, Clopper-Pearson; None without reals)
    fpr_upper_95: float | None
    #: fake images caught (None without fake images)
    tpr: float | None
    balanced_accuracy: float | None
    n_real: int
    n_fake: int
    thresholds: PointThresholds


@dataclass
class EvalReport:
    """``aligngemini eval``'s report (``eval.json``): the fused verdicts' metrics overall (with bootstrap intervals)
    and per source, the pixel branch alone, and the detectors alone (provenance ignored)."""

    bundle_id: str
    n: int
    n_errors: int
    overall: Metrics
    ci: Intervals | None
    by_source: dict[str, Metrics]
    errors: list[dict[str, str]]
    pixel_only: Metrics | None = None
    without_provenance: Metrics | None = None
    decided_by_provenance: int | None = None
    data: str | None = None
    #: the detectors' verdicts at each of the bundle's operating points: fpr (real photos called fake), tpr,
    #: balanced accuracy, and the thresholds used
    operating_points: dict[str, PointMetrics] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"bundle_id": self.bundle_id, "n": self.n, "n_errors": self.n_errors,
                             "overall": {**self.overall, "ci": self.ci}, "by_source": self.by_source,
                             "errors": self.errors}
        for k in ("pixel_only", "without_provenance", "decided_by_provenance", "data", "operating_points"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalReport:
        overall = dict(d["overall"])
        ci = overall.pop("ci", None)
        return cls(bundle_id=d.get("bundle_id", ""), n=d["n"], n_errors=d["n_errors"], overall=overall,  # type: ignore[arg-type]
                   ci=ci, by_source=d.get("by_source", {}), errors=d.get("errors", []),
                   pixel_only=d.get("pixel_only"), without_provenance=d.get("without_provenance"),
                   decided_by_provenance=d.get("decided_by_provenance"), data=d.get("data"),
                   operating_points=d.get("operating_points"))


def report(rows: Sequence[Row], bundle_id: str = "", threshold: float = 0.5) -> EvalReport:
    ok = [r for r in rows if r.error is None]
    labels = [r.label for r in ok]
    scores = [float(r.score) for r in ok if r.score is not None]
    preds = [bool(r.is_fake) for r in ok]
    rep = EvalReport(bundle_id=bundle_id, n=len(rows), n_errors=len(rows) - len(ok),
                     overall=binary_metrics(labels, scores, threshold, preds),
                     ci=bootstrap_ci(labels, scores, threshold, preds),
                     by_source=per_source(labels, scores, [r.source for r in ok], threshold, preds),
                     errors=[{"path": r.path, "error": r.error} for r in rows if r.error][:50])
    if ok and all(r.pixel is not None for r in ok):
        rep.pixel_only = binary_metrics(labels, [float(r.pixel) for r in ok if r.pixel is not None], threshold)
    if ok and all(r.detector_score is not None for r in ok):
        # the detectors alone, as if every file's metadata had been stripped: the figure provenance cannot inflate
        rep.without_provenance = binary_metrics(labels, [float(r.detector_score) for r in ok
                                                         if r.detector_score is not None], threshold,
                                                [bool(r.detector_is_fake) for r in ok])
        rep.decided_by_provenance = sum(r.provenance is not None for r in ok)
    return rep


def at_operating_points(rows: Sequence[Row], manifest: Manifest) -> dict[str, PointMetrics]:
    """Each operating point's verdicts, recomputed from the branch probabilities every row recorded (the detectors
    alone, before provenance). For an OR bundle, a VLM the planner skipped as decided at the evaluated thresholds
    counts as not run at the others too."""
    from aligngemini_sdk.fusion import Fusion

    ok = [r for r in rows if r.error is None]
    out: dict[str, PointMetrics] = {}
    for name, point in manifest.fusion.operating_points.items():
        fusion = Fusion.of(manifest, name)
        verdicts = [fusion(r.pixel, r.semantic)[0] for r in ok]
        m = binary_metrics([r.label for r in ok], [float(v) for v in verdicts], predictions=verdicts)
        called = sum(bool(v) for r, v in zip(ok, verdicts) if r.label == 0)
        upper = fpr_upper_bound(called, m["n_real"], BOUND_CONFIDENCE) if m["n_real"] else None
        out[name] = PointMetrics(
            target_fpr=point.target_fpr, fpr=None if m["acc_real"] is None else 1.0 - m["acc_real"],
            fpr_upper_95=upper, tpr=m["acc_fake"],
            balanced_accuracy=m["balanced_accuracy"], n_real=m["n_real"], n_fake=m["n_fake"],
            thresholds=PointThresholds(pixel=fusion.t_pixel, semantic=fusion.t_semantic, fusion=fusion.spec.threshold))
    return out


def to_markdown(rep: EvalReport, title: str = "Evaluation") -> str:
    o = rep.overall
    lines = [f"## {title}", "", f"bundle `{rep.bundle_id}`: {o['n']} images ({rep.n_errors} unreadable)", ""]
    rows = [["**all**", o["n"], fmt(o["balanced_accuracy"], True), fmt(o["auc"]), fmt(o["acc_real"], True),
             fmt(o["acc_fake"], True)]]
    for src, m in rep.by_source.items():
        rows.append([src, m["n"], fmt(m["balanced_accuracy"], True), fmt(m["auc"]), fmt(m["acc_real"], True),
                     fmt(m["acc_fake"], True)])
    lines.append(markdown_table(["source", "n", "balanced acc.", "AUC", "acc. real", "acc. fake"], rows))
    wp = rep.without_provenance
    if wp:
        lines += ["", f"Detectors alone (provenance ignored, as for a file whose metadata was stripped): balanced "
                      f"accuracy {fmt(wp['balanced_accuracy'], True)}, AUC {fmt(wp['auc'])}; provenance decided "
                      f"{rep.decided_by_provenance} of {o['n']} verdicts."]
    if rep.operating_points:
        lines += ["", "At the bundle's operating points (detectors alone):", "",
                  markdown_table(["operating point", "target FPR", "FPR (reals called fake)", "FPR, 95 % upper bound",
                                  "TPR (fakes caught)", "balanced acc."],
                                 [[n, fmt(p["target_fpr"], True), fmt(p["fpr"], True),
                                   fmt(p.get("fpr_upper_95"), True), fmt(p["tpr"], True),
                                   fmt(p["balanced_accuracy"], True)] for n, p in rep.operating_points.items()])]
    ci = rep.ci
    if ci:
        (b_lo, b_hi), (a_lo, a_hi) = ci["balanced_accuracy"], ci["auc"]
        lines += ["", f"{100 * ci['level']:.0f} % confidence intervals ({ci['method']}, {ci['n_boot']} resamples): "
                      f"balanced accuracy {100 * b_lo:.1f}-{100 * b_hi:.1f} %, AUC {a_lo:.3f}-{a_hi:.3f}."]
    return "\n".join(lines) + "\n"


def evaluate(bundle: str, data: str, *, out: str | None = None, workers: int = 1, backend: str = "local",
             exclude_sources: Sequence[str] = (), **opts: Any) -> EvalReport:
    from aligngemini_sdk.bundle import Bundle

    samples = load_collection(data, exclude_sources)
    b = Bundle.open(bundle)
    rows = run_rows(os.fspath(b.root), samples, workers=workers, backend=backend, **opts)
    rep = report(rows, b.manifest.bundle_id)
    rep.data = os.fspath(data)
    rep.operating_points = at_operating_points(rows, b.manifest) or None
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "eval.json").write_text(json.dumps(rep.to_dict(), indent=1))
        (d / "eval.md").write_text(to_markdown(rep))
        with open(d / "predictions.jsonl", "w") as fh:
            for r in rows:
                fh.write(json.dumps(asdict(r)) + "\n")
    return rep
