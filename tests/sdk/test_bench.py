"""``aligngemini bench``: table, JSON, markdown and plots; statuses; the budget sweep; device profiles."""

import json

import pytest

from aligngemini_sdk import Bundle
from aligngemini_sdk.bench import BenchReport, compare, run_bench, to_markdown

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_bench_two_branch_bundle(two_branch_bundle, collection, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(two_branch_bundle, b)
    rep = run_bench(str(b), data=str(collection), warmup=1, runs=5, budgets=[None, 1.0, 60_000.0],
                    out=str(tmp_path / "out"), max_images=12, max_vlm_images=4, write_profile=True)
    arts = {r.key: r for r in rep.artifacts}
    assert set(arts) == {"pixel/fp32", "semantic/q4_k_m"}
    for r in arts.values():
        assert r.status == "✅" and r.latency_ms is not None and r.latency_ms.p50 > 0 and r.peak_rss_mb > 0
        assert r.warmup is not None and r.warmup.runs >= 1 and r.accuracy is not None
        # the runtime's memory is read before the image set is decoded: the whole run's peak is not the model's
        assert 0 < r.runtime_rss_delta_mb < r.runtime_rss_mb <= r.peak_rss_mb
    assert set(arts["semantic/q4_k_m"].semantic_split_ms or {}) >= {"image_ms", "prompt_ms", "total_ms"}
    assert rep.pipeline is not None and rep.pipeline.sdk_overhead is not None
    sweep = {row.budget_ms: row for row in rep.pipeline.budgets}
    assert sweep[1.0].vlm_run_rate == 0.0  # 1 ms never covers the VLM's measured p90
    assert sweep[None].deadline_hit_rate is None
    assert rep.pipeline.sdk_overhead.raw_runtime_ms_p50 > 0
    for f in ("bench.json", "bench.md", "latency.png", "accuracy_vs_latency.png"):
        assert (tmp_path / "out" / f).stat().st_size > 0, f
    prof = Bundle.open(b).manifest.device_profiles[rep.device_key]
    assert set(prof) == {"pixel/fp32", "semantic/q4_k_m"}
    md = to_markdown(rep)
    assert "Fused pipeline" in md and "SDK overhead" in md
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved == rep.to_dict() and BenchReport.from_dict(saved).to_dict() == saved  # the JSON round-trips
    assert "accuracy" in saved["artifacts"][0] and "error" not in saved["artifacts"][0]
    assert "1.00x" in compare(BenchReport.from_dict(saved), rep)  # a report against itself: every p50 ratio is 1


def test_failed_artifact_is_a_row_not_a_crash(bundle_copy, tmp_path):
    data = json.loads((bundle_copy / "manifest.json").read_text())
    data["branches"]["pixel"]["artifacts"]["broken"] = {**data["branches"]["pixel"]["artifacts"]["fp32"],
                                                        "precision": "fp32"}
    data["branches"]["pixel"]["artifacts"]["broken"]["files"] = {
        "model": {**data["branches"]["pixel"]["artifacts"]["fp32"]["files"]["model"], "sha256": "0" * 64}}
    (bundle_copy / "manifest.json").write_text(json.dumps(data))
    rep = run_bench(str(bundle_copy), warmup=1, runs=3, plots=False)
    rows = {r.artifact: r for r in rep.artifacts}
    assert rows["fp32"].status == "✅"
    assert rows["broken"].status == "❌" and "checksum" in rows["broken"].status_reason


def test_committed_bench_reports_still_load():
    """Reports written by earlier versions (benchmarks/reports) load, render and compare; the newest layout
    serialises back to the very JSON it was read from."""
    from pathlib import Path

    from tests.conftest import ROOT

    files = sorted(Path(ROOT, "benchmarks", "reports").rglob("bench.json"))
    assert files
    for f in files:
        d = json.loads(f.read_text())
        rep = BenchReport.from_dict(d)
        assert rep.artifacts and "## Artifacts" in to_markdown(rep) and "1.00x" in compare(rep, rep)
        if "runtime_rss_mb" in d["artifacts"][0]:  # written since the runtime's own memory is read: every key kept
            assert rep.to_dict() == d
