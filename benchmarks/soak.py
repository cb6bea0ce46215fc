"""Bounded soak: RSS of one process over many ``detect()`` calls on real images (and hostile ones mixed in).

    .venv/bin/python benchmarks/soak.py [--calls 10000] [--out benchmarks/reports/soak]

One Detector on the embedded default bundle cycles through real shared images (PNG and JPEG, several sizes),
with every 50th call a hostile input that must fail with a typed error (a truncated JPEG, a TIFF declaring
20000 x 20000 pixels, a path that does not exist). RSS (from /proc/self/statm) is sampled every
100 calls; the figure is the growth from the end of warm-up (the first 500 calls) to the end. Target (issue
18): under 20 MB. Output: ``<cpu>.json``, ``<cpu>.md`` and ``<cpu>.png`` under ``--out``, CPU named.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "images"
WARMUP = 500


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hostile_inputs() -> list[bytes | str]:
    jpg = (SHARED / "real" / "cnndetection").glob("*.jpg")
    truncated = next(jpg).read_bytes()[:2000]
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 20000) \
        + struct.pack("<HHII", 257, 4, 1, 20000) + struct.pack("<I", 0) + zlib.compress(bytes(1000))
    return [truncated, tiff, str(SHARED / "does-not-exist.jpg")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "soak"))
    args = ap.parse_args()
    from aligngemini_sdk import AlignGeminiError, Detector
    from aligngemini_sdk.device import cpu_info, cpu_slug

    images = sorted((SHARED / "real" / "kodak24").glob("*.png"))[:8] + \
        sorted((SHARED / "fake" / "sd_family").glob("*.jpg"))[:8] + sorted((SHARED / "real" / "cnndetection").glob("*.jpg"))[:8]
    data = [p.read_bytes() for p in images]
    bad = hostile_inputs()
    det = Detector()
    samples, n_errors, t0 = [], 0, time.perf_counter()
    for i in range(args.calls):
        if i % 50 == 49:
            try:
                det.detect(bad[(i // 50) % len(bad)])
            except AlignGeminiError:
                n_errors += 1
        else:
            det.detect(data[i % len(data)])
        if i % 100 == 99:
            samples.append((i + 1, rss_mb()))
            if i % 1000 == 999:
                print(f"[soak] {i + 1}/{args.calls} calls, RSS {samples[-1][1]:.1f} MB", flush=True)
    wall = time.perf_counter() - t0
    after_warmup = next(r for n, r in samples if n >= WARMUP)
    cpu = cpu_info()
    rep = {"cpu": cpu, "calls": args.calls, "hostile_calls": args.calls // 50, "typed_errors": n_errors,
           "wall_s": wall, "rss_mb_after_warmup": after_warmup, "rss_mb_end": samples[-1][1],
           "growth_mb": samples[-1][1] - after_warmup, "target_growth_mb": 20.0, "samples": samples,
           "bundle_id": det.bundle.manifest.bundle_id, "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = cpu_slug()
    (out / f"{slug}.json").write_text(json.dumps(rep, indent=1))
    md = (f"# Soak: {args.calls} detect() calls on {cpu['model']}\n\n"
          f"Bundle `{rep['bundle_id']}`, {len(images)} real images cycled, every 50th call hostile "
          f"({rep['hostile_calls']} calls, {n_errors} typed errors). Wall {wall:.0f} s, {rep['date']}.\n\n"
          f"| RSS after {WARMUP} calls | RSS at the end | growth | target |\n|---|---|---|---|\n"
          f"| {after_warmup:.1f} MB | {rep['rss_mb_end']:.1f} MB | **{rep['growth_mb']:+.1f} MB** | < 20 MB |\n")
    (out / f"{slug}.md").write_text(md)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([n for n, _ in samples], [r for _, r in samples])
    ax.axvline(WARMUP, color="grey", ls=":", label="end of warm-up")
    ax.axhline(after_warmup + 20, color="red", ls="--", label="target: +20 MB")
    ax.set_xlabel("detect() calls")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"Soak on {cpu['model']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{slug}.png", dpi=110)
    print(md)
    return 0 if rep["growth_mb"] < 20 and n_errors == rep["hostile_calls"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
