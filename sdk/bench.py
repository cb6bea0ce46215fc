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

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.budget import percentile
from aligngemini_sdk.metrics import binary_metrics, fmt, markdown_table
from aligngemini_sdk.runtimes.base import TensorRuntime


def _stats(ms: list[float]) -> dict[str, float]:
    return {"p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms), "min": min(ms), "n": len(ms)}


def _bench_artifact(bundle_dir: str, branch: str, artifact: str, images: list[str], labels: list[int],
                    warmup: int, runs: int, threads: int | None, device: str, max_acc_images: int) -> dict[str, Any]:
    """Runs in a fresh process: load one artifact, time it, score it."""
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.image import load_image
    from aligngemini_sdk.runtimes import open_pixel, open_semantic

    out: dict[str, Any] = {"branch": branch, "artifact": artifact}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        b = Bundle.open(bundle_dir)
        m = b.manifest
        spec = m.pixel if branch == "pixel" else m.semantic
        assert spec is not None
        t = time.perf_counter()
        rt = (open_pixel(b, spec, device=device, threads=threads, precision=artifact) if branch == "pixel"
              else open_semantic(b, spec, device=device, threads=threads, precision=artifact))
        out["load_ms"] = (time.perf_counter() - t) * 1e3
        out["describe"] = rt.describe()
        decoded = [load_image(p).rgb for p in images]
        sample = decoded[0] if decoded else np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
        t = time.perf_counter()
        for _ in range(warmup):
            rt.predict([sample])
        out["warmup"] = {"runs": warmup, "ms": (time.perf_counter() - t) * 1e3}
        ms = []
        for i in range(runs):
            img = decoded[i % len(decoded)] if decoded else sample
            t = time.perf_counter()
            rt.predict([img])
            ms.append((time.perf_counter() - t) * 1e3)
        out["latency_ms"] = _stats(ms)
        out["latency_samples"] = ms
        if branch == "semantic":
            parts: dict[str, list[float]] = {}
            for _ in range(min(runs, 5)):
                rt.predict([sample])
                for k, v in rt.last_timing.items():
                    parts.setdefault(k, []).append(v)
            out["semantic_split_ms"] = {k: statistics.median(v) for k, v in parts.items()}
        if isinstance(rt, TensorRuntime) and rt.dynamic_batch and m.pixel and m.pixel.input.fixed_size:
            best = (1, 1e3 / out["latency_ms"]["p50"])
            for bs in (2, 4, 8, 16):
                batch = [sample] * bs
                rt.predict(batch)
                t = time.perf_counter()
                reps = max(2, 8 // bs)
                for _ in range(reps):
                    rt.predict(batch)
                ips = bs * reps / (time.perf_counter() - t)
                if ips > best[1]:
                    best = (bs, ips)
            out["throughput"] = {"best_batch": best[0], "images_per_s": best[1]}
        else:
            out["throughput"] = {"best_batch": 1, "images_per_s": 1e3 / out["latency_ms"]["p50"]}
        if decoded and labels and len(set(labels)) > 1:
            n = len(decoded) if branch == "pixel" else min(len(decoded), max_acc_images)
            probs = rt.predict(decoded[:n])
            out["accuracy"] = binary_metrics(labels[:n], probs, spec.threshold)
            out["accuracy"]["n"] = n
            out["probabilities"] = [float(p) for p in probs]
        rt.close()
        out["ok"] = True
    except Exception as exc:  # a failing artifact is a row in the report, not a crash
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["peak_rss_delta_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0
    return out


def _status(res: dict[str, Any], validation: dict[str, Any], branch: str) -> tuple[str, str]:
    if not res.get("ok"):
        return "❌", res.get("error", "failed")
    art = res["artifact"]
    if branch == "pixel":
        gate = validation.get("artifacts", {}).get(art, {})
        passed = gate.get("passed")
    else:
        gate = validation.get("parity", {}).get("types", {}).get(art.upper(), {})
        passed = gate.get("passed", None) if gate.get("tolerance") is not None else True
    if passed is False:
        return "❎", "; ".join(gate.get("reasons", [])) or "failed its gate"
    return ("✅", "gate passed") if passed else ("✅", "ran (no gate recorded)")


def pipeline_sweep(bundle_dir: str, images: list[str], labels: list[int], budgets: list[float | None],
                   threads: int | None, device: str, power: str) -> dict[str, Any]:
    """Fused detection under each budget: deadline hit rate, VLM run rate, fused accuracy; SDK overhead."""
    from aligngemini_sdk.detector import Detector, DetectorOptions
    from aligngemini_sdk.image import Image, load_image

    det = Detector(bundle_dir, DetectorOptions(device=device, threads=threads, power=power))
    decoded = [Image(load_image(p).rgb, p) for p in images] or \
        [Image(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8), "synthetic")]
    det.warmup(runs=2)
    from aligngemini_sdk.provenance import apply_policy, read_provenance

    provenance = [read_provenance(Path(p).read_bytes()) for p in images]
    rows = []
    for budget in budgets:
        res = [det.detect(im, budget_ms=budget) for im in decoded]
        row = {"budget_ms": budget, "n": len(res),
               "deadline_hit_rate": None if budget is None else float(np.mean([r.total_ms <= budget for r in res])),
               "vlm_run_rate": float(np.mean([r.semantic.ran for r in res])),
               "skip_reasons": {k: sum(r.semantic.skip_reason == k for r in res)
                                for k in ("budget", "power", "decided", "unavailable")},
               "total_ms": _stats([r.total_ms for r in res])}
        if labels and len(set(labels)) > 1:
            row["accuracy"] = binary_metrics(labels, [r.score for r in res], predictions=[r.is_fake for r in res])
            if provenance:  # the same verdicts with the files' provenance applied; "accuracy" is the detectors'
                fused = [apply_policy(det.provenance_policy, pv, r.is_fake, r.score, r.pixel.probability)
                         for pv, r in zip(provenance, res)]
                row["accuracy_with_provenance"] = binary_metrics(labels, [f[1] for f in fused],
                                                                 predictions=[f[0] for f in fused])
        rows.append(row)
    overhead = None
    if isinstance(det.pixel, TensorRuntime):
        overhead = sdk_overhead(det, decoded[0])
    det.close()
    prov_ms = _stats([pv.ms for pv in provenance]) if provenance else None
    return {"budgets": rows, "sdk_overhead": overhead, "provenance_ms": prov_ms,
            "provenance_decided": sum(pv.says == "ai" or pv.trusted for pv in provenance)}


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


def sdk_overhead(det: Any, im: Any, blocks: int = 24) -> dict[str, Any]:
    """detect() on a decoded image vs the raw runtime call on the artifact's ready input tensor, both in the
    same process on the same session, timed by :func:`time_interleaved`."""
    [(_, tensor)] = det.pixel.prepare([im.rgb])
    ms = time_interleaved({"raw": lambda: det.pixel.run_tensor(tensor),
                           "detect": lambda: det.detect(im, power="low")}, blocks)
    r50, f50 = statistics.median(ms["raw"]), statistics.median(ms["detect"])
    return {"raw_runtime_ms_p50": r50, "detect_ms_p50": f50, "overhead_ms": f50 - r50,
            "overhead_pct": 100.0 * (f50 - r50) / r50, "target_pct": 5.0,
            "input": f"{tensor.dtype.name} {'x'.join(map(str, tensor.shape))}",
            "note": "detect() on a decoded image (crop + input preparation + planner + fusion) vs session.run on "
                    "the ready input tensor; medians of alternating timed blocks"}


def run_bench(bundle: str, *, data: str | None = None, device: str = "cpu", threads: int | None = None,
              warmup: int = 5, runs: int = 50, budgets: list[float | None] | None = None, out: str | None = None,
              max_images: int = 200, max_vlm_images: int = 16, power: str = "full",
              write_profile: bool = False, plots: bool = True, exclude_sources: tuple[str, ...] = ()) -> dict[str, Any]:
    from aligngemini_sdk.bundle import Bundle, write_device_profile
    from aligngemini_sdk.dataset import load_collection
    from aligngemini_sdk.device import device_key, fingerprint
    from aligngemini_sdk.manifest import LatencyStat
    from aligngemini_sdk.progress import log_step

    b = Bundle.open(bundle)
    m = b.manifest
    images: list[str] = []
    labels: list[int] = []
    if data:
        import random

        samples = load_collection(data, exclude_sources)
        random.Random(0).shuffle(samples)
        samples = samples[:max_images]
        images, labels = [os.fspath(s.path) for s in samples], [s.label for s in samples]
    rep: dict[str, Any] = {"bundle_id": m.bundle_id, "bundle": os.fspath(b.source), "device": device,
                           "threads": threads, "device_key": device_key(device, threads),
                           "fingerprint": fingerprint(), "warmup": warmup, "runs": runs,
                           "data": data, "n_images": len(images), "artifacts": []}
    t_all = time.perf_counter()
    jobs = [("pixel", a) for a in (m.pixel.artifacts if m.pixel else {})] + \
           [("semantic", a) for a in (m.semantic.artifacts if m.semantic else {})]
    ctx = get_context("spawn")
    for branch, art in jobs:
        log_step(f"bench {branch}/{art}")
        n_runs = runs if branch == "pixel" else max(5, runs // 5)
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            res = pool.submit(_bench_artifact, os.fspath(b.root), branch, art, images, labels, warmup if branch == "pixel"
                              else min(warmup, 2), n_runs, threads, device, max_vlm_images).result()
        spec = m.branch(branch)
        res["status"], res["status_reason"] = _status(res, spec.validation if spec else {}, branch)
        res["size_mb"] = b.size_bytes(branch, art) / 1e6
        res["precision"] = spec.artifacts[art].precision if spec else ""
        res["runtime"] = spec.artifacts[art].runtime if spec else ""
        rep["artifacts"].append(res)
    if budgets is None:
        budgets = [None]
    log_step("bench fused pipeline under budgets " + ", ".join("none" if x is None else f"{x:g} ms" for x in budgets))
    rep["pipeline"] = pipeline_sweep(os.fspath(b.root), images[:max_vlm_images * 4] if m.semantic else images,
                                     labels[:max_vlm_images * 4] if m.semantic else labels, budgets, threads,
                                     device, power)
    log_step("conformance: the bundle's golden outputs on this device")
    from aligngemini_sdk.conformance import verify_bundle

    rep["conformance"] = verify_bundle(b, device=device, threads=threads).to_dict()
    rep["wall_s"] = time.perf_counter() - t_all
    if write_profile:
        stats = {f"{r['branch']}/{r['artifact']}": LatencyStat(p50_ms=r["latency_ms"]["p50"], p90_ms=r["latency_ms"]["p90"],
                                                               n=r["latency_ms"]["n"])
                 for r in rep["artifacts"] if r.get("ok")}
        if b.root != Path(bundle).resolve():
            log_step("--write-profile: bundle is a .tar; profile written to the unpacked copy only")
        write_device_profile(b.root, rep["device_key"], stats)
        rep["profile_written"] = {"device_key": rep["device_key"], "entries": list(stats)}
    if out:
        write_outputs(rep, Path(out), plots=plots)
    return rep


def to_markdown(rep: dict[str, Any]) -> str:
    fp = rep["fingerprint"]
    cpu = fp["cpu"]
    lines = [f"# aligngemini bench: `{rep['bundle_id']}`", "",
             f"- device: **{rep['device']}**, threads: {rep['threads'] or 'default'}; CPU {cpu['model']} "
             f"({cpu['arch']}, {cpu['usable_cores']} usable cores; features: {' '.join(cpu['features'])})",
             f"- onnxruntime {fp['onnxruntime']} ({', '.join(fp['onnxruntime_providers'])}); llama.cpp "
             f"{fp['llama_cpp'] or '-'}; TensorRT {fp['tensorrt'] or 'not installed'}; python {fp['python']}",
             f"- warm-up {rep['warmup']} runs (excluded), {rep['runs']} timed runs (pixel; VLM: fewer); data: "
             f"{rep['data'] or 'synthetic image'} ({rep['n_images']} images); wall time {rep['wall_s']:.0f} s", "",
             "## Artifacts (batch 1)", ""]
    rows = []
    for r in rep["artifacts"]:
        lat = r.get("latency_ms", {})
        acc = r.get("accuracy", {})
        rows.append([r["status"], f"{r['branch']}/{r['artifact']}", r["runtime"], r["precision"], f"{r['size_mb']:.2f}",
                     fmt(lat.get("p50")), fmt(lat.get("p90")), fmt(lat.get("p99")), fmt(lat.get("mean")),
                     f"{r['throughput']['images_per_s']:.1f} @b{r['throughput']['best_batch']}" if r.get("throughput") else "–",
                     f"{r['peak_rss_mb']:.0f}", fmt(acc.get("balanced_accuracy"), True), fmt(acc.get("auc")),
                     f"{r['warmup']['ms']:.0f} ms" if r.get("warmup") else "–",
                     r["status_reason"] if r["status"] != "✅" else ""])
    lines.append(markdown_table(["", "artifact", "runtime", "precision", "MB", "p50 ms", "p90 ms", "p99 ms", "mean ms",
                                 "throughput img/s", "peak RSS MB", "bal. acc", "AUC", "warm-up", "note"], rows))
    for r in rep["artifacts"]:
        if r.get("semantic_split_ms"):
            s = r["semantic_split_ms"]
            lines += ["", f"Semantic latency split ({r['artifact']}): image encoding {s.get('image_ms', 0):.1f} ms, "
                          f"prompt evaluation {s.get('prompt_ms', 0):.1f} ms, total {s.get('total_ms', 0):.1f} ms "
                          f"(text prefix reused from cache: {'yes' if s.get('prefix_reused') else 'no'})"]
    p = rep["pipeline"]
    lines += ["", "## Fused pipeline under latency budgets", ""]
    rows = []
    for row in p["budgets"]:
        acc = row.get("accuracy", {})
        rows.append(["none" if row["budget_ms"] is None else f"{row['budget_ms']:g}", row["n"],
                     fmt(row["deadline_hit_rate"], True), fmt(row["vlm_run_rate"], True),
                     fmt(acc.get("balanced_accuracy"), True), fmt(row["total_ms"]["p50"]), fmt(row["total_ms"]["p90"]),
                     ", ".join(f"{k} {v}" for k, v in row["skip_reasons"].items() if v)])
    lines.append(markdown_table(["budget ms", "n", "deadline hit", "VLM ran", "fused bal. acc", "p50 ms", "p90 ms",
                                 "VLM skips"], rows))
    acc_p = next((r.get("accuracy_with_provenance") for r in p["budgets"] if r.get("accuracy_with_provenance")), None)
    if p.get("provenance_ms"):
        lines += ["", f"Provenance branch: p50 {p['provenance_ms']['p50']:.3f} ms per file; it carries evidence for "
                      f"{p['provenance_decided']} of {p['provenance_ms']['n']} files"
                      + (f"; fused balanced accuracy with it {fmt(acc_p['balanced_accuracy'], True)} (the table above "
                         "is the detectors alone, as for stripped metadata)" if acc_p else "") + "."]
    if p.get("sdk_overhead"):
        o = p["sdk_overhead"]
        lines += ["", f"SDK overhead: detect() p50 {o['detect_ms_p50']:.3f} ms vs raw runtime call "
                      f"{o['raw_runtime_ms_p50']:.3f} ms = **{o['overhead_pct']:.1f}%** (target ≤ {o['target_pct']:.0f}%). "
                      f"{o['note']}."]
    if rep.get("conformance"):
        c = rep["conformance"]
        lines += ["", f"## Conformance on this device: {'✅ passed' if c['passed'] else '❎ not passed'}", "",
                  markdown_table(["artifact", "golden inputs", "max |Δ| (logit)", "tolerance", "verdict"],
                                 [[f"{a['branch']}/{a['artifact']}", a["inputs"], fmt(a["max_abs_delta"]),
                                   fmt(a["tolerance"]), {True: "pass", False: "FAIL", None: "not checked"}[a["passed"]]
                                   + ("" if a["passed"] else f" ({a['detail']})")] for a in c["artifacts"]])]
    if rep.get("profile_written"):
        lines += ["", f"Device profile written for `{rep['profile_written']['device_key']}`."]
    return "\n".join(lines) + "\n"


def write_outputs(rep: dict[str, Any], out: Path, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(rep, default=str))
    (out / "bench.json").write_text(json.dumps(slim, indent=1))
    (out / "bench.md").write_text(to_markdown(rep))
    if plots:
        try:
            plot(rep, out)
        except ImportError as exc:
            sys.stderr.write(f"[aligngemini] plots skipped: {exc} (pip install 'aligngemini-sdk[bench]')\n")


def plot(rep: dict[str, Any], out: Path) -> list[Path]:
    from aligngemini_sdk.extras import require

    mpl = require("matplotlib", "Benchmark plots")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rep["artifacts"] if r.get("ok")]
    paths = []
    if ok:
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(ok)), 4))
        ax.boxplot([r["latency_samples"] for r in ok], showfliers=True)
        ax.set_xticks(range(1, len(ok) + 1), [f"{r['branch']}\n{r['artifact']}" for r in ok])
        ax.set_yscale("log")
        ax.set_ylabel("latency per image, ms (log)")
        ax.set_title(f"Latency distribution, batch 1 ({rep['device']}, {rep['fingerprint']['cpu']['usable_cores']} cores)")
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        paths.append(out / "latency.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    pts = [r for r in ok if r.get("accuracy") and r["accuracy"].get("balanced_accuracy") is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in pts:
            x, y = r["latency_ms"]["p50"], 100 * r["accuracy"]["balanced_accuracy"]
            ax.scatter([x], [y], s=60)
            ax.annotate(f"{r['branch']}/{r['artifact']}", (x, y), textcoords="offset points", xytext=(5, 5))
        for row in rep["pipeline"]["budgets"]:
            if row["budget_ms"] is not None:
                ax.axvline(row["budget_ms"], ls="--", color="grey", alpha=0.6)
                ax.text(row["budget_ms"], ax.get_ylim()[0], f" {row['budget_ms']:g} ms budget", rotation=90,
                        va="bottom", fontsize=8, color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, ms (log)")
        ax.set_ylabel("balanced accuracy, %")
        ax.set_title("Accuracy vs latency per artifact (budgets dashed)")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        paths.append(out / "accuracy_vs_latency.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two reports side by side: per artifact p50/p90 and accuracy, with the B/A latency ratio."""
    def key(r: dict[str, Any]) -> str:
        return f"{r['branch']}/{r['artifact']}"

    ra, rb = {key(r): r for r in a["artifacts"]}, {key(r): r for r in b["artifacts"]}
    rows = []
    for k in list(ra) + [k for k in rb if k not in ra]:
        x, y = ra.get(k, {}), rb.get(k, {})
        pa, pb = x.get("latency_ms", {}).get("p50"), y.get("latency_ms", {}).get("p50")
        rows.append([k, x.get("status", "–"), fmt(pa), fmt(x.get("latency_ms", {}).get("p90")),
                     fmt(x.get("accuracy", {}).get("balanced_accuracy"), True), y.get("status", "–"), fmt(pb),
                     fmt(y.get("latency_ms", {}).get("p90")), fmt(y.get("accuracy", {}).get("balanced_accuracy"), True),
                     f"{pb / pa:.2f}x" if pa and pb else "–"])
    head = (f"A: `{a['bundle_id']}` on {a['fingerprint']['cpu']['model']} ({a['device']}, threads {a['threads']})\n\n"
            f"B: `{b['bundle_id']}` on {b['fingerprint']['cpu']['model']} ({b['device']}, threads {b['threads']})\n\n")
    return head + markdown_table(["artifact", "A", "A p50", "A p90", "A bal.acc", "B", "B p50", "B p90", "B bal.acc",
                                  "B/A p50"], rows) + "\n"
