"""Bounded soak: RSS of one process over many ``detect()`` calls on real images (and hostile ones mixed in).

    .venv/bin/python benchmarks/soak.py [--calls 10000] [--out benchmarks/reports/soak]

One Detector on the embedded default bundle cycles through real shared images (PNG and JPEG, several sizes),
with every 50th call a hostile input that must fail with a typed error (a truncated JPEG, a TIFF declaring
20000 x 20000 pixels, a path that does not exist). RSS (from /proc/self/statm) is sampled every
100 calls; the figure is the growth from the end of warm-up (the first 500 calls) to the end. Target (issue
18): under 20 MB. Output: ``<cpu>-<kind>.json``, ``<cpu>-<kind>.md`` and ``<cpu>-<kind>.png`` under ``--out``, CPU named.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aligngemini_sdk.bench import rss_now_mb
from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "images"
WARMUP = 500


def hostile_inputs() -> list[bytes | str]:
    jpg = (SHARED / "real" / "cnndetection").glob("*.jpg")
    truncated = next(jpg).read_bytes()[:2000]
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 20000) \
        + struct.pack("<HHII", 257, 4, 1, 20000) + struct.pack("<I", 0) + zlib.compress(bytes(1000))
    return [truncated, tiff, str(SHARED / "does-not-exist.jpg")]


@dataclass
class SoakReport:
    cpu: dict[str, Any]
    calls: int
    hostile_calls: int
    typed_errors: int
    wall_s: float
    rss_mb_after_warmup: float
    rss_mb_end: float
    growth_mb: float
    target_growth_mb: float
    samples: list[tuple[int, float]]  # (calls so far, RSS MB), every 100 calls
    bundle_id: str
    date: str

    @property
    def passed(self) -> bool:
        return self.growth_mb < self.target_growth_mb and self.typed_errors == self.hostile_calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "soak"))
    args = ap.parse_args()
    from aligngemini_sdk import Detector
    from aligngemini_sdk.device import cpu_info, report_stem

    images = sorted((SHARED / "real" / "kodak24").glob("*.png"))[:8] + \
        sorted((SHARED / "fake" / "sd_family").glob("*.jpg"))[:8] + sorted((SHARED / "real" / "cnndetection").glob("*.jpg"))[:8]
    det = Detector()
    t0 = time.perf_counter()
    samples, n_errors = soak(det, [p.read_bytes() for p in images], hostile_inputs(), args.calls)
    after_warmup = next(r for n, r in samples if n >= WARMUP)
    rep = SoakReport(cpu_info(), args.calls, args.calls // 50, n_errors, time.perf_counter() - t0, after_warmup,
                     samples[-1][1], samples[-1][1] - after_warmup, 20.0, samples, det.bundle.manifest.bundle_id,
                     time.strftime("%Y-%m-%d"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = report_stem()
    (out / f"{slug}.json").write_text(json.dumps(asdict(rep), indent=1))
    md = markdown(rep, len(images))
    (out / f"{slug}.md").write_text(md)
    plot(rep, out / f"{slug}.png")
    print(md)
    return 0 if rep.passed else 1


def soak(det: Any, data: list[bytes], bad: list[bytes | str], calls: int) -> tuple[list[tuple[int, float]], int]:
    """``calls`` detect() calls cycling through ``data``, every 50th one hostile (cycling through ``bad``);
    (RSS samples every 100 calls, typed errors from the hostile calls)."""
    from aligngemini_sdk import AlignGeminiError

    samples, n_errors = [], 0
    for i in range(calls):
        if i % 50 == 49:
            try:
                det.detect(bad[(i // 50) % len(bad)])
            except AlignGeminiError:
                n_errors += 1
        else:
            det.detect(data[i % len(data)])
        if i % 100 == 99:
            samples.append((i + 1, rss_now_mb()))
            if i % 1000 == 999:
                print(f"[soak] {i + 1}/{calls} calls, RSS {samples[-1][1]:.1f} MB", flush=True)
    return samples, n_errors


def markdown(rep: SoakReport, n_images: int) -> str:
    return (f"# Soak: {rep.calls} detect() calls on {rep.cpu['model']}\n\n"
            f"Bundle `{rep.bundle_id}`, {n_images} real images cycled, every 50th call hostile "
            f"({rep.hostile_calls} calls, {rep.typed_errors} typed errors). Wall {rep.wall_s:.0f} s, {rep.date}.\n\n"
            f"| RSS after {WARMUP} calls | RSS at the end | growth | target |\n|---|---|---|---|\n"
            f"| {rep.rss_mb_after_warmup:.1f} MB | {rep.rss_mb_end:.1f} MB | **{rep.growth_mb:+.1f} MB** | "
            f"< {rep.target_growth_mb:.0f} MB |\n")


def plot(rep: SoakReport, path: Path) -> None:
    with figure(path, dpi=110, figsize=(7, 3.5)) as ax:
        ax.plot([n for n, _ in rep.samples], [r for _, r in rep.samples])
        ax.axvline(WARMUP, color="grey", ls=":", label="end of warm-up")
        ax.axhline(rep.rss_mb_after_warmup + rep.target_growth_mb, color="red", ls="--",
                   label=f"target: +{rep.target_growth_mb:.0f} MB")
        ax.set_xlabel("detect() calls")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(f"Soak on {rep.cpu['model']}", fontsize=9)
        ax.legend(fontsize=8)


if __name__ == "__main__":
    raise SystemExit(main())
