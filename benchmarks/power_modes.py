"""What the power modes cost and save on this CPU: latency of back-to-back calls, and the CPU time each call
costs when photos arrive one at a time (ONNX Runtime's idle workers spin-wait between calls in ``full`` only).

    .venv/bin/python benchmarks/power_modes.py [--rounds 3] [--gap-ms 30] [--out benchmarks/reports/power]

The shipped default's pixel branch (``load_semantic=False``: the spinning question is about one session; with two
ONNX sessions neither spins) on 8 decoded Kodak24 photos; modes alternate ``--rounds`` times in one run.
Output: ``<cpu>-<kind>.json``, ``<cpu>-<kind>.md``, ``<cpu>-<kind>.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "images" / "real" / "kodak24"


@dataclass
class ModeRun:
    power: str
    spinning: bool
    p50_ms: float  # back-to-back detect() on decoded photos
    cpu_ms_per_call: float  # process CPU time per call, one photo every gap_ms


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(power: str, images: list, gap_ms: float) -> ModeRun:
    from aligngemini_sdk import Detector

    with Detector(load_semantic=False, power=power) as det:
        assert det.pixel is not None
        for im in images:
            det.detect(im)
        times = []
        for _ in range(8):
            for im in images:
                t = time.perf_counter()
                det.detect(im)
                times.append((time.perf_counter() - t) * 1e3)
        c0, n = _cpu_s(), 0
        for _ in range(4):
            for im in images:
                det.detect(im)
                n += 1
                time.sleep(gap_ms / 1e3)
        return ModeRun(power, bool(det.pixel.describe()["spinning"]), statistics.median(times),
                       (_cpu_s() - c0) * 1e3 / n)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gap-ms", type=float, default=30.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "power"))
    args = ap.parse_args()
    from aligngemini_sdk.device import cpu_label, report_stem
    from aligngemini_sdk.image import load_image

    images = [load_image(p) for p in sorted(KODAK.glob("*.png"))[:8]]
    runs = [measure(power, images, args.gap_ms) for _ in range(args.rounds) for power in ("full", "balanced", "low")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem()
    (out / f"{stem}.json").write_text(json.dumps({"cpu": cpu_label(), "gap_ms": args.gap_ms,
                                                  "runs": [asdict(r) for r in runs]}, indent=1))
    lines = [f"# Power modes on `{cpu_label()}`", "",
             f"Shipped default's pixel branch, 8 decoded Kodak24 photos, {time.strftime('%Y-%m-%d')}; modes alternate "
             f"{args.rounds} times in one run. CPU time per call with one photo every {args.gap_ms:.0f} ms.", "",
             "| power | idle workers spin | p50 ms (back to back) | CPU ms per call |", "|---|---|---|---|"]
    lines += [f"| {r.power} | {r.spinning} | {r.p50_ms:.2f} | {r.cpu_ms_per_call:.1f} |" for r in runs]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(runs, out / f"{stem}.png")
    print("\n".join(lines))
    return 0


def _plot(runs: list[ModeRun], path: Path) -> None:
    with figure(path, dpi=110, nrows=1, ncols=2, figsize=(8, 3.2)) as (a, b):
        for ax, field, label in ((a, "p50_ms", "p50 ms, back to back"), (b, "cpu_ms_per_call", "CPU ms per call")):
            for i, power in enumerate(("full", "balanced", "low")):
                vals = [getattr(r, field) for r in runs if r.power == power]
                ax.scatter([i] * len(vals), vals)
            ax.set_xticks(range(3), ["full", "balanced", "low"])
            ax.set_title(label)
            ax.set_ylim(bottom=0)
            ax.grid(True, axis="y", alpha=0.3)


if __name__ == "__main__":
    raise SystemExit(main())
