"""Semantic-branch latency per GGUF quantization type, split into the image (vision tower + the LLM over its
tokens), prompt evaluation and total.

    .venv/bin/python benchmarks/vlm_latency.py [--out benchmarks/reports/vlm]

Uses a tiny random-weight Gemma3 (no hub access), exported by the product path to Q8_0, Q6_K, Q5_K_M and
Q4_K_M with an f16 mmproj, then ``aligngemini bench`` on the bundle. Absolute numbers are for the tiny model;
the split shows where time goes and how quantization moves it. For a real VLM, point ``--hf`` at it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", help="a transformers VLM directory (default: a tiny random Gemma3)")
    ap.add_argument("--quants", default="Q8_0,Q6_K,Q5_K_M,Q4_K_M")
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "vlm"))
    args = ap.parse_args()
    from aligngemini_sdk.bench import run_bench, to_markdown
    from aligngemini_sdk.export.tiny import build_tiny_gemma3
    from aligngemini_sdk.export.vlm import VlmExportConfig, export_vlm

    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(args.hf) if args.hf else build_tiny_gemma3(Path(tmp) / "tiny-gemma3")
        bundle = Path(tmp) / "bundle"
        export_vlm(VlmExportConfig(hf=hf, out=bundle, quants=tuple(args.quants.split(",")), n_ctx=512))
        rep = run_bench(str(bundle), warmup=2, runs=args.runs, out=args.out)
    lines = ["# Semantic branch latency per quantization (split)", "",
             "| artifact | MB | image ms (vision tower + LLM over its tokens) | vision tower ms | prompt eval ms | "
             "total ms (p50 of split runs) | bench p50 ms |",
             "|---|---|---|---|---|---|---|"]
    for r in rep.artifacts:
        s = r.semantic_split_ms or {}
        p50 = r.latency_ms.p50 if r.latency_ms else float("nan")
        lines.append(f"| {r.artifact} | {r.size_mb:.2f} | {s.get('image_ms', 0):.1f} | {s.get('vision_ms', 0):.1f} | "
                     f"{s.get('prompt_ms', 0):.1f} | "
                     f"{s.get('total_ms', 0):.1f} | {p50:.1f} |")
    md = "\n".join(lines) + "\n\n" + to_markdown(rep)
    (Path(args.out) / "README.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
