"""``aligngemini bench``'s report: typed records (``bench.json`` is their ``to_dict()``; ``from_dict`` reads old
files too), the markdown, the plots, and ``bench compare``. Measuring is :mod:`aligngemini_sdk.bench`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from aligngemini_sdk.metrics import Metrics, fmt, markdown_table
from aligngemini_sdk.plot import figure

#: keys left out of the JSON when they hold nothing (what the report has always done)
_OPTIONAL = frozenset({"error", "load_ms", "warmup", "latency_ms", "semantic_split_ms", "throughput", "accuracy",
                       "probabilities", "accuracy_with_provenance", "profile_written", "pipeline", "conformance"})


def _json(obj: Any) -> dict[str, Any]:
    return asdict(obj, dict_factory=lambda kv: {k: v for k, v in kv if not (v is None and k in _OPTIONAL)})


@dataclass
class LatencyStats:
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    n: int

    @classmethod
    def of(cls, ms: list[float]) -> LatencyStats:
        import statistics

        from aligngemini_sdk.budget import percentile

        return cls(p50=percentile(ms, 50), p90=percentile(ms, 90), p99=percentile(ms, 99), mean=statistics.fmean(ms),
                   min=min(ms), n=len(ms))


@dataclass
class WarmUp:
    runs: int
    ms: float


@dataclass
class Throughput:
    best_batch: int
    images_per_s: float


@dataclass
class ArtifactBench:
    """One artifact, measured in its own process: status, latency at batch 1, throughput, memory, accuracy."""

    branch: str
    artifact: str
    ok: bool = False
    error: str | None = None
    load_ms: float | None = None
    describe: dict[str, Any] = field(default_factory=dict)
    warmup: WarmUp | None = None
    latency_ms: LatencyStats | None = None
    latency_samples: list[float] = field(default_factory=list)
    #: the VLM's time per stage (image encoding, prompt evaluation, total), medians of a few calls
    semantic_split_ms: dict[str, float] | None = None
    throughput: Throughput | None = None
    accuracy: Metrics | None = None
    probabilities: list[float] | None = None
    #: the benchmark process's peak RSS over the whole run, the decoded image set included (not the model's cost)
    peak_rss_mb: float = 0.0
    peak_rss_delta_mb: float = 0.0
    #: its RSS once the runtime was open and warmed up on one image, before the image set was decoded (what running
    #: this artifact costs a process), and the rise over the process before the runtime opened
    runtime_rss_mb: float = 0.0
    runtime_rss_delta_mb: float = 0.0
    status: str = ""  # ✅ ran (and passed its gate), ❎ ran but failed its gate, ❌ failed to run
    status_reason: str = ""
    size_mb: float = 0.0
    precision: str = ""
    runtime: str = ""

    @property
    def key(self) -> str:
        return f"{self.branch}/{self.artifact}"


@dataclass
class BudgetRow:
    """The fused pipeline under one budget."""

    budget_ms: float | None
    n: int
    deadline_hit_rate: float | None
    vlm_run_rate: float
    skip_reasons: dict[str, int]
    total_ms: LatencyStats
    accuracy: Metrics | None = None
    #: the same verdicts with the files' provenance applied (``accuracy`` is the detectors')
    accuracy_with_provenance: Metrics | None = None


@dataclass
class SdkOverhead:
    raw_runtime_ms_p50: float
    detect_ms_p50: float
    overhead_ms: float
    overhead_pct: float
    target_pct: float
    input: str
    note: str


@dataclass
class PipelineBench:
    budgets: list[BudgetRow]
    sdk_overhead: SdkOverhead | None = None
    provenance_ms: LatencyStats | None = None  # (reports before the provenance branch have neither)
    provenance_decided: int = 0


@dataclass
class BenchReport:
    bundle_id: str
    bundle: str
    device: str
    threads: int | None
    device_key: str
    fingerprint: dict[str, Any]
    warmup: int
    runs: int
    data: str | None
    n_images: int
    artifacts: list[ArtifactBench] = field(default_factory=list)
    pipeline: PipelineBench | None = None
    conformance: dict[str, Any] | None = None  # conformance.ConformanceReport.to_dict()
    wall_s: float = 0.0
    profile_written: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(_json(self), default=str))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchReport:
        return _build(cls, d)


_NESTED: dict[str, Any] = {}


def _build(cls: Any, d: dict[str, Any]) -> Any:
    """A dataclass from its JSON dict, nested records included (unknown keys ignored: newer files load)."""
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v, sub = d[f.name], _NESTED.get(f"{cls.__name__}.{f.name}")
        if v is not None and sub is not None:
            v = [_build(sub, x) for x in v] if isinstance(v, list) else _build(sub, v)
        kw[f.name] = v
    return cls(**kw)


_NESTED.update({"BenchReport.artifacts": ArtifactBench, "BenchReport.pipeline": PipelineBench,
                "ArtifactBench.warmup": WarmUp, "ArtifactBench.latency_ms": LatencyStats,
                "ArtifactBench.throughput": Throughput, "PipelineBench.budgets": BudgetRow,
                "PipelineBench.sdk_overhead": SdkOverhead, "PipelineBench.provenance_ms": LatencyStats,
                "BudgetRow.total_ms": LatencyStats})
assert all(is_dataclass(c) for c in _NESTED.values())


def to_markdown(rep: BenchReport) -> str:
    cpu, fp = rep.fingerprint["cpu"], rep.fingerprint
    lines = [f"# aligngemini bench: `{rep.bundle_id}`", "",
             f"- device: **{rep.device}**, threads: {rep.threads or 'default'}; CPU {cpu['model']} "
             f"({cpu['arch']}, {cpu['usable_cores']} usable cores; features: {' '.join(cpu['features'])})",
             f"- onnxruntime {fp['onnxruntime']} ({', '.join(fp['onnxruntime_providers'])}); llama.cpp "
             f"{fp['llama_cpp'] or '-'}; TensorRT {fp['tensorrt'] or 'not installed'}; python {fp['python']}",
             f"- warm-up {rep.warmup} runs (excluded), {rep.runs} timed runs (pixel; VLM: fewer); data: "
             f"{rep.data or 'synthetic image'} ({rep.n_images} images); wall time {rep.wall_s:.0f} s", "",
             "## Artifacts (batch 1)", "", _artifact_table(rep.artifacts)]
    for r in rep.artifacts:
        if r.semantic_split_ms:
            sp = r.semantic_split_ms
            vision = (f" (vision tower {sp['vision_ms']:.1f} ms, LLM over the image tokens "
                      f"{sp.get('image_ms', 0) - sp['vision_ms']:.1f} ms)" if "vision_ms" in sp else "")
            lines += ["", f"Semantic latency split ({r.artifact}): image {sp.get('image_ms', 0):.1f} ms{vision}, "
                          f"prompt evaluation {sp.get('prompt_ms', 0):.1f} ms, total {sp.get('total_ms', 0):.1f} ms "
                          f"(text prefix reused from cache: {'yes' if sp.get('prefix_reused') else 'no'})"]
    if rep.pipeline is not None:
        lines += _pipeline_lines(rep.pipeline)
    if rep.conformance:
        lines += _conformance_lines(rep.conformance)
    if rep.profile_written:
        lines += ["", f"Device profile written for `{rep.profile_written['device_key']}`."]
    return "\n".join(lines) + "\n"


def _artifact_table(artifacts: list[ArtifactBench]) -> str:
    rows = []
    for r in artifacts:
        lat, acc = r.latency_ms, r.accuracy
        rows.append([r.status, r.key, r.runtime, r.precision, f"{r.size_mb:.2f}",
                     fmt(lat.p50 if lat else None), fmt(lat.p90 if lat else None), fmt(lat.p99 if lat else None),
                     fmt(lat.mean if lat else None),
                     f"{r.throughput.images_per_s:.1f} @b{r.throughput.best_batch}" if r.throughput else "–",
                     f"{r.runtime_rss_mb:.0f} (+{r.runtime_rss_delta_mb:.0f})",
                     fmt(acc["balanced_accuracy"] if acc else None, True),
                     fmt(acc["auc"] if acc else None), f"{r.warmup.ms:.0f} ms" if r.warmup else "–",
                     r.status_reason if r.status != "✅" else ""])
    return markdown_table(["", "artifact", "runtime", "precision", "MB", "p50 ms", "p90 ms", "p99 ms", "mean ms",
                           "throughput img/s", "RSS MB, runtime open (+ its own)", "bal. acc", "AUC", "warm-up",
                           "note"], rows)


def _pipeline_lines(p: PipelineBench) -> list[str]:
    rows = []
    for row in p.budgets:
        acc = row.accuracy
        rows.append(["none" if row.budget_ms is None else f"{row.budget_ms:g}", row.n,
                     fmt(row.deadline_hit_rate, True), fmt(row.vlm_run_rate, True),
                     fmt(acc["balanced_accuracy"] if acc else None, True), fmt(row.total_ms.p50),
                     fmt(row.total_ms.p90), ", ".join(f"{k} {v}" for k, v in row.skip_reasons.items() if v)])
    lines = ["", "## Fused pipeline under latency budgets", "",
             markdown_table(["budget ms", "n", "deadline hit", "VLM ran", "fused bal. acc", "p50 ms", "p90 ms",
                             "VLM skips"], rows)]
    acc_p = next((r.accuracy_with_provenance for r in p.budgets if r.accuracy_with_provenance), None)
    if p.provenance_ms:
        lines += ["", f"Provenance branch: p50 {p.provenance_ms.p50:.3f} ms per file; it carries evidence for "
                      f"{p.provenance_decided} of {p.provenance_ms.n} files"
                      + (f"; fused balanced accuracy with it {fmt(acc_p['balanced_accuracy'], True)} (the table above "
                         "is the detectors alone, as for stripped metadata)" if acc_p else "") + "."]
    if p.sdk_overhead:
        o = p.sdk_overhead
        lines += ["", f"SDK overhead: detect() p50 {o.detect_ms_p50:.3f} ms vs raw runtime call "
                      f"{o.raw_runtime_ms_p50:.3f} ms = **{o.overhead_pct:.1f}%** (target ≤ {o.target_pct:.0f}%). "
                      f"{o.note}."]
    return lines


def _conformance_lines(c: dict[str, Any]) -> list[str]:
    return ["", f"## Conformance on this device: {'✅ passed' if c['passed'] else '❎ not passed'}", "",
            markdown_table(["artifact", "golden inputs", "max |Δ| (logit)", "tolerance", "verdict"],
                           [[f"{a['branch']}/{a['artifact']}", a["inputs"], fmt(a["max_abs_delta"]),
                             fmt(a["tolerance"]), {True: "pass", False: "FAIL", None: "not checked"}[a["passed"]]
                             + ("" if a["passed"] else f" ({a['detail']})")] for a in c["artifacts"]])]


def write_outputs(rep: BenchReport, out: Path, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(rep.to_dict(), indent=1))
    (out / "bench.md").write_text(to_markdown(rep))
    if plots:
        try:
            plot(rep, out)
        except ImportError as exc:
            sys.stderr.write(f"[aligngemini] plots skipped: {exc} (pip install 'aligngemini-sdk[bench]')\n")


def plot(rep: BenchReport, out: Path) -> list[Path]:
    ok = [r for r in rep.artifacts if r.ok and r.latency_ms]
    paths = []
    if ok:
        paths.append(out / "latency.png")
        with figure(paths[-1], dpi=120, figsize=(max(5, 1.6 * len(ok)), 4)) as ax:
            ax.boxplot([r.latency_samples for r in ok], showfliers=True)
            ax.set_xticks(range(1, len(ok) + 1), [f"{r.branch}\n{r.artifact}" for r in ok])
            ax.set_yscale("log")
            ax.set_ylabel("latency per image, ms (log)")
            ax.set_title(f"Latency distribution, batch 1 ({rep.device}, {rep.fingerprint['cpu']['usable_cores']} cores)")
            ax.grid(True, axis="y", alpha=0.3)
    pts = [r for r in ok if r.accuracy and r.accuracy.get("balanced_accuracy") is not None]
    if pts:
        paths.append(_accuracy_plot(rep, pts, out / "accuracy_vs_latency.png"))
    return paths


def _accuracy_plot(rep: BenchReport, pts: list[ArtifactBench], path: Path) -> Path:
    with figure(path, dpi=120, figsize=(6, 4)) as ax:
        for r in pts:
            assert r.latency_ms is not None and r.accuracy is not None and r.accuracy["balanced_accuracy"] is not None
            x, y = r.latency_ms.p50, 100 * r.accuracy["balanced_accuracy"]
            ax.scatter([x], [y], s=60)
            ax.annotate(r.key, (x, y), textcoords="offset points", xytext=(5, 5))
        for row in rep.pipeline.budgets if rep.pipeline else []:
            if row.budget_ms is not None:
                ax.axvline(row.budget_ms, ls="--", color="grey", alpha=0.6)
                ax.text(row.budget_ms, ax.get_ylim()[0], f" {row.budget_ms:g} ms budget", rotation=90,
                        va="bottom", fontsize=8, color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, ms (log)")
        ax.set_ylabel("balanced accuracy, %")
        ax.set_title("Accuracy vs latency per artifact (budgets dashed)")
        ax.grid(True, alpha=0.3)
    return path


def compare(a: BenchReport, b: BenchReport) -> str:
    """Two reports side by side: per artifact p50/p90 and accuracy, with the B/A latency ratio."""
    ra, rb = {r.key: r for r in a.artifacts}, {r.key: r for r in b.artifacts}
    rows = []
    for k in list(ra) + [k for k in rb if k not in ra]:
        x, y = ra.get(k), rb.get(k)
        rows.append([k, *_compare_cells(x), *_compare_cells(y), _ratio(x, y)])
    head = "".join(f"{n}: `{r.bundle_id}` on {r.fingerprint['cpu']['model']} ({r.device}, threads {r.threads})\n\n"
                   for n, r in (("A", a), ("B", b)))
    return head + markdown_table(["artifact", "A", "A p50", "A p90", "A bal.acc", "B", "B p50", "B p90", "B bal.acc",
                                  "B/A p50"], rows) + "\n"


def _compare_cells(r: ArtifactBench | None) -> list[str]:
    if r is None:
        return ["–", "–", "–", "–"]
    lat = r.latency_ms
    return [r.status or "–", fmt(lat.p50 if lat else None), fmt(lat.p90 if lat else None),
            fmt(r.accuracy["balanced_accuracy"] if r.accuracy else None, True)]


def _ratio(x: ArtifactBench | None, y: ArtifactBench | None) -> str:
    pa = x.latency_ms.p50 if x and x.latency_ms else None
    pb = y.latency_ms.p50 if y and y.latency_ms else None
    return f"{pb / pa:.2f}x" if pa and pb else "–"
