"""``aligngemini bench``: the numbers vendors choose precision, runtime and branches with.

Per branch artifact (each measured in its own spawned process, so peak RSS is that artifact's own):
status (✅ ran and passed its gate, ❎ ran but failed it, ❌ failed to run, with the reason), size, latency
p50/p90/p99/mean at batch 1 after an excluded (and reported) warm-up, throughput at the best batch,
peak RSS, and with ``--data`` balanced accuracy and AUC. Then the fused pipeline under a sweep of budgets:
deadline hit rate, VLM run rate, fused balanced accuracy, and the SDK's overhead over the raw runtime
call. Output: terminal table, JSON, markdown and PNG plots; ``bench compare A.json B.json`` puts two
reports side by side.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.bench_report import (
    ArtifactBench,
    BenchReport,
    BudgetRow,
    LatencyStats,
    PipelineBench,
    SdkOverhead,
    Throughput,
    WarmUp,
    compare,
    to_markdown,
    write_outputs,
)
from aligngemini_sdk.metrics import binary_metrics
from aligngemini_sdk.runtimes.base import BranchRuntime, TensorRuntime

__all__ = ["BenchReport", "compare", "pipeline_sweep", "run_bench", "sdk_overhead", "time_interleaved", "to_markdown"]


def _bench_artifact(bundle_dir: str, branch: str, artifact: str, images: list[str], labels: list[int],
                    warmup: int, runs: int, threads: int | None, device: str, max_acc_images: int) -> ArtifactBench:
    """Runs in a fresh process: load one artifact, time it, score it. A failure is a row, not a crash."""
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.image import load_image
    from aligngemini_sdk.manifest import PixelBranchSpec, SemanticBranchSpec
    from aligngemini_sdk.runtimes import open_pixel, open_semantic

    out = ArtifactBench(branch=branch, artifact=artifact)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before_open = rss_now_mb()
    try:
        b = Bundle.open(bundle_dir)
        m = b.manifest
        t = time.perf_counter()
        if branch == "pixel" and m.pixel is not None:
            spec: PixelBranchSpec | SemanticBranchSpec = m.pixel
            rt = open_pixel(b, m.pixel, device=device, threads=threads, precision=artifact)
        elif branch == "semantic" and m.semantic is not None:
            spec, rt = m.semantic, open_semantic(b, m.semantic, device=device, threads=threads, precision=artifact)
        else:
            raise ValueError(f"the bundle has no {branch} branch")
        out.load_ms, out.describe = (time.perf_counter() - t) * 1e3, rt.describe()
        sample = load_image(images[0]).rgb if images else \
            np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
        _warm_up(out, rt, sample, warmup)
        out.runtime_rss_mb = rss_now_mb()  # the runtime open and run once; the image set not decoded yet
        out.runtime_rss_delta_mb = out.runtime_rss_mb - before_open
        decoded = [sample] + [load_image(p).rgb for p in images[1:]] if images else []
        _time_calls(out, rt, decoded or [sample], runs)
        fixed = b.manifest.pixel is not None and b.manifest.pixel.input.fixed_size
        out.throughput = _throughput(rt, sample, out) if isinstance(rt, TensorRuntime) and rt.dynamic_batch and fixed \
            else Throughput(best_batch=1, images_per_s=1e3 / out.latency_ms.p50 if out.latency_ms else 0.0)
        if decoded and labels and len(set(labels)) > 1:
            n = len(decoded) if branch == "pixel" else min(len(decoded), max_acc_images)
            probs = rt.predict(decoded[:n])
            out.accuracy = binary_metrics(labels[:n], probs, spec.threshold)
            out.probabilities = [float(p) for p in probs]
        rt.close()
        out.ok = True
    except Exception as exc:  # a failing artifact is a row in the report, not a crash
        out.ok, out.error = False, f"{type(exc).__name__}: {exc}"
    out.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out.peak_rss_delta_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0
    return out


def rss_now_mb() -> float:
    """This process's resident memory now (Linux: /proc/self/statm), else its peak so far (``ru_maxrss``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm_up(out: ArtifactBench, rt: BranchRuntime, image: np.ndarray, warmup: int) -> None:
    """The first calls, timed and reported apart (kernel selection, allocations)."""
    t = time.perf_counter()
    for _ in range(warmup):
        rt.predict([image])
    out.warmup = WarmUp(runs=warmup, ms=(time.perf_counter() - t) * 1e3)


def _time_calls(out: ArtifactBench, rt: BranchRuntime, images: Sequence[np.ndarray], runs: int) -> None:
    """Batch-1 latency (after :func:`_warm_up`); for a runtime that splits its calls (the VLM), the median time per
    stage over a few more calls."""
    ms = []
    for i in range(runs):
        t = time.perf_counter()
        rt.predict([images[i % len(images)]])
        ms.append((time.perf_counter() - t) * 1e3)
    out.latency_ms, out.latency_samples = LatencyStats.of(ms), ms
    if out.branch == "semantic":
        parts: dict[str, list[float]] = {}
        for _ in range(min(runs, 5)):
            rt.predict([images[0]])
            for k, v in rt.last_timing.items():
                parts.setdefault(k, []).append(v)
        out.semantic_split_ms = {k: statistics.median(v) for k, v in parts.items()}


def _throughput(rt: BranchRuntime, sample: np.ndarray, out: ArtifactBench) -> Throughput:
    """Images per second at the best batch size for a model with a dynamic batch axis."""
    assert out.latency_ms is not None
    best = Throughput(best_batch=1, images_per_s=1e3 / out.latency_ms.p50)
    for bs in (2, 4, 8, 16):
        batch = [sample] * bs
        rt.predict(batch)
        t = time.perf_counter()
        reps = max(2, 8 // bs)
        for _ in range(reps):
            rt.predict(batch)
        ips = bs * reps / (time.perf_counter() - t)
        if ips > best.images_per_s:
            best = Throughput(best_batch=bs, images_per_s=ips)
    return best


def _status(res: ArtifactBench, validation: dict[str, Any]) -> tuple[str, str]:
    """✅ ran and passed its gate (or ran with none recorded), ❎ ran but failed it, ❌ failed to run."""
    from aligngemini_sdk.export.gate import GateReport
    from aligngemini_sdk.export.parity import ParityReport

    if not res.ok:
        return "❌", res.error or "failed"
    reasons: list[str] = []
    if "parity" in validation:  # a VLM: GGUF against transformers
        parity = ParityReport.from_dict(validation["parity"]).entry(res.artifact)
        passed = None if parity is None else (parity.passed if parity.tolerance is not None else True)
    else:  # an ONNX image classifier (the pixel branch, or a semantic one): the export gate
        gate = GateReport.from_dict(validation).artifacts.get(res.artifact) if validation else None
        passed = gate.passed if gate else None
        reasons = gate.reasons if gate else []
    if passed is False:
        return "❎", "; ".join(reasons) or "failed its gate"
    return ("✅", "gate passed") if passed else ("✅", "ran (no gate recorded)")


def pipeline_sweep(bundle_dir: str, images: list[str], labels: list[int], budgets: list[float | None],
                   threads: int | None, device: str, power: str) -> PipelineBench:
    """Fused detection under each budget: deadline hit rate, VLM run rate, fused accuracy; SDK overhead."""
    from aligngemini_sdk.budget import PowerMode
    from aligngemini_sdk.detector import Detector, DetectorOptions
    from aligngemini_sdk.device import Device
    from aligngemini_sdk.image import Image, load_image
    from aligngemini_sdk.provenance import read_provenance

    det = Detector(bundle_dir, DetectorOptions(device=Device.parse(device), threads=threads,
                                               power=PowerMode.parse(power)))
    decoded = [Image(load_image(p).rgb, p) for p in images] or \
        [Image(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8), "synthetic")]
    det.warmup(runs=2)
    provenance = [read_provenance(Path(p).read_bytes()) for p in images]
    rows = [_budget_row(det, decoded, labels, provenance, budget) for budget in budgets]
    overhead = sdk_overhead(det, decoded[0]) if isinstance(det.pixel_alone, TensorRuntime) else None
    det.close()
    return PipelineBench(budgets=rows, sdk_overhead=overhead,
                         provenance_ms=LatencyStats.of([pv.ms for pv in provenance]) if provenance else None,
                         provenance_decided=sum(pv.says == "ai" or pv.trusted for pv in provenance))


def _budget_row(det: Any, decoded: list[Any], labels: list[int], provenance: list[Any],
                budget: float | None) -> BudgetRow:
    from aligngemini_sdk.provenance import apply_policy

    res = [det.detect(im, budget_ms=budget) for im in decoded]
    row = BudgetRow(budget_ms=budget, n=len(res),
                    deadline_hit_rate=None if budget is None else float(np.mean([r.total_ms <= budget for r in res])),
                    vlm_run_rate=float(np.mean([r.semantic.ran for r in res])),
                    skip_reasons={k: sum(r.semantic.skip_reason == k for r in res)
                                  for k in ("budget", "power", "decided", "unavailable")},
                    total_ms=LatencyStats.of([r.total_ms for r in res]))
    if labels and len(set(labels)) > 1:
        row.accuracy = binary_metrics(labels, [r.score for r in res], predictions=[r.is_fake for r in res])
        if provenance:  # the same verdicts with the files' provenance applied; "accuracy" is the detectors'
            fused = [apply_policy(det.provenance_policy, pv, r.is_fake, r.score, r.pixel.probability)
                     for pv, r in zip(provenance, res)]
            row.accuracy_with_provenance = binary_metrics(labels, [f[1] for f in fused],
                                                          predictions=[f[0] for f in fused])
    return row


def time_interleaved(fns: dict[str, Callable[[], Any]], blocks: int, block: int = 5) -> dict[str, list[float]]:
    """Milliseconds per call of each function, timed in short blocks in turn (ABCABC...), the first call of
    every block untimed.

    Round-robin so load drift on a shared machine hits all of them alike (one long block per function biased
    ratios); blocks rather than single calls because a runtime's worker threads keep spinning for a while after
    a call and leave caches in their own state, which on 2 cores slows whatever runs next -- with single-call
    interleaving the INT8 model once looked 1.33x faster than FP32 in a run whose back-to-back timing said 1.9x.
    """
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(blocks):
        for k, fn in fns.items():
            fn()  # absorbs the previous function's leftovers
            for _ in range(block):
                t = time.perf_counter()
                fn()
                ms[k].append((time.perf_counter() - t) * 1e3)
    return ms


def sdk_overhead(det: Any, im: Any, blocks: int = 24) -> SdkOverhead:
    """detect() on a decoded image vs the raw runtime call on the artifact's ready input tensor, both in the
    same process on the same session (the one a pixel-only call runs on), timed by :func:`time_interleaved`."""
    session = det.pixel_alone
    [(_, tensor)] = session.prepare([im.rgb])
    ms = time_interleaved({"raw": lambda: session.run_tensor(tensor),
                           "detect": lambda: det.detect(im, power="low")}, blocks)
    r50, f50 = statistics.median(ms["raw"]), statistics.median(ms["detect"])
    return SdkOverhead(raw_runtime_ms_p50=r50, detect_ms_p50=f50, overhead_ms=f50 - r50,
                       overhead_pct=100.0 * (f50 - r50) / r50, target_pct=5.0,
                       input=f"{tensor.dtype.name} {'x'.join(map(str, tensor.shape))}",
                       note="detect() on a decoded image (crop + input preparation + planner + fusion) vs session.run "
                            "on the ready input tensor; medians of alternating timed blocks")


def run_bench(bundle: str, *, data: str | None = None, device: str = "cpu", threads: int | None = None,
              warmup: int = 5, runs: int = 50, budgets: list[float | None] | None = None, out: str | None = None,
              max_images: int = 200, max_vlm_images: int = 16, power: str = "full",
              write_profile: bool = False, plots: bool = True, exclude_sources: tuple[str, ...] = ()) -> BenchReport:
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.conformance import verify_bundle
    from aligngemini_sdk.device import device_key, fingerprint
    from aligngemini_sdk.progress import log_step

    b = Bundle.open(bundle)
    m = b.manifest
    images, labels = _bench_images(data, exclude_sources, max_images)
    rep = BenchReport(bundle_id=m.bundle_id, bundle=os.fspath(b.source), device=device, threads=threads,
                      device_key=device_key(device, threads), fingerprint=fingerprint(), warmup=warmup, runs=runs,
                      data=data, n_images=len(images))
    t_all = time.perf_counter()
    rep.artifacts = _bench_artifacts(b, images, labels, warmup, runs, threads, device, max_vlm_images)
    budgets = budgets if budgets is not None else [None]
    log_step("bench fused pipeline under budgets " + ", ".join("none" if x is None else f"{x:g} ms" for x in budgets))
    n_pipe = max_vlm_images * 4 if m.semantic else len(images)
    rep.pipeline = pipeline_sweep(os.fspath(b.root), images[:n_pipe], labels[:n_pipe], budgets, threads, device, power)
    log_step("conformance: the bundle's golden outputs on this device")
    rep.conformance = verify_bundle(b, device=device, threads=threads).to_dict()
    rep.wall_s = time.perf_counter() - t_all
    if write_profile:
        rep.profile_written = _write_profile(b, bundle, rep)
    if out:
        write_outputs(rep, Path(out), plots=plots)
    return rep


def _bench_images(data: str | None, exclude_sources: tuple[str, ...], max_images: int) -> tuple[list[str], list[int]]:
    if not data:
        return [], []
    import random

    from aligngemini_sdk.dataset import load_collection

    samples = load_collection(data, exclude_sources)
    random.Random(0).shuffle(samples)
    samples = samples[:max_images]
    return [os.fspath(s.path) for s in samples], [s.label for s in samples]


def _bench_artifacts(b: Any, images: list[str], labels: list[int], warmup: int, runs: int, threads: int | None,
                     device: str, max_vlm_images: int) -> list[ArtifactBench]:
    """Each artifact in its own spawned process, so its peak RSS is its own."""
    from aligngemini_sdk.progress import log_step

    m, rows = b.manifest, []
    jobs = [("pixel", a) for a in (m.pixel.artifacts if m.pixel else {})] + \
           [("semantic", a) for a in (m.semantic.artifacts if m.semantic else {})]
    for branch, art in jobs:
        log_step(f"bench {branch}/{art}")
        n_runs = runs if branch == "pixel" else max(5, runs // 5)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            res = pool.submit(_bench_artifact, os.fspath(b.root), branch, art, images, labels,
                              warmup if branch == "pixel" else min(warmup, 2), n_runs, threads, device,
                              max_vlm_images).result()
        spec = m.branch(branch)
        res.status, res.status_reason = _status(res, spec.validation if spec else {})
        res.size_mb = b.size_bytes(branch, art) / 1e6
        res.precision = spec.artifacts[art].precision if spec else ""
        res.runtime = spec.artifacts[art].runtime if spec else ""
        rows.append(res)
    return rows


def _write_profile(b: Any, bundle: str, rep: BenchReport) -> dict[str, Any]:
    from aligngemini_sdk.bundle import write_device_profile
    from aligngemini_sdk.manifest import LatencyStat
    from aligngemini_sdk.progress import log_step

    stats = {r.key: LatencyStat(p50_ms=r.latency_ms.p50, p90_ms=r.latency_ms.p90, n=r.latency_ms.n)
             for r in rep.artifacts if r.ok and r.latency_ms}
    if b.root != Path(bundle).resolve():
        log_step("--write-profile: bundle is a .tar; profile written to the unpacked copy only")
    write_device_profile(b.root, rep.device_key, stats)
    return {"device_key": rep.device_key, "entries": list(stats)}
