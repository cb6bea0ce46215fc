"""Does this CPU's INT8 give the bundle's answers? Optimized ONNX Runtime kernels vs the file's reference arithmetic.

    .venv/bin/python benchmarks/int8_kernels_vs_reference.py [--bundle LABEL=DIR ...] [--out DIR]

For each bundle (default: the embedded one), every INT8 pixel artifact is run on the held-aside test split and
the unseen-generator split (237 real shared images) twice through the SDK's own runtime: with ONNX Runtime's
optimized integer kernels (what ``detect()`` runs) and with graph optimizations off (QuantizeLinear /
DequantizeLinear around float ops: the arithmetic the QDQ file defines, the same on every CPU up to float
rounding). Reported per bundle: mean and max |Δp|, decision flips at the bundle's threshold, the per-node
saturation bound read from the file, and the INT8 median latency, all on the CPU named in the report.
Output: ``<cpu>-<kind>.json``, ``<cpu>-<kind>.md`` and ``<cpu>-<kind>.png`` (|Δp| per image, sorted) under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np

from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("test", "unseen")


def split_images(name: str) -> list[Path]:
    base = ROOT / "training" / "splits"
    with open(base / f"{name}.csv", newline="") as fh:
        return [(base / r["path"]).resolve() for r in csv.DictReader(fh)]


def measure(label: str, bundle_dir: str, images: dict[str, list[Path]], timers: dict) -> dict:
    """Deltas per split; adds this bundle's INT8 call to ``timers`` (timed later, interleaved with the others)."""
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.export.pixel import kernels_vs_reference
    from aligngemini_sdk.export.saturation import prove_file
    from aligngemini_sdk.image import load_image
    from aligngemini_sdk.quantized_input import QuantizedInput
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel

    b = Bundle.open(bundle_dir)
    spec = b.manifest.pixel
    assert spec is not None
    artifacts: dict[str, dict] = {}
    out = {"label": label, "bundle_id": b.manifest.bundle_id, "threshold": spec.threshold, "artifacts": artifacts}
    for name, art in spec.artifacts.items():
        if art.precision != "int8" or art.runtime != "onnxruntime":
            continue
        path = b.verified_path(art.files["model"])
        q = QuantizedInput.from_options(art.options)
        opt = OnnxRuntimePixel(path, spec.input, device="cpu", input_quantization=q)
        ref = OnnxRuntimePixel(path, spec.input, device="cpu", input_quantization=q, reference_arithmetic=True)
        per_split = {}
        for split, paths in images.items():
            rgb = [load_image(p).rgb for p in paths]
            po, pr = opt.predict(rgb), ref.predict(rgb)
            per_split[split] = {"n": len(paths), **kernels_vs_reference(po, pr, spec.threshold),
                                "abs_dp": np.abs(po - pr).tolist()}
        [(_, batch)] = opt.prepare([load_image(images[SPLITS[0]][0]).rgb])
        timers[f"{label}/{name}"] = lambda rt=opt, x=batch: rt.run_tensor(x)
        proof = prove_file(path)
        artifacts[name] = {"splits": per_split, "latency_ms_p50": None,
                           "weights": art.options.get("calibration", {}).get("weights", "s8"),
                           "saturation_bound": proof.to_dict()}
    return out


def to_markdown(rep: dict) -> str:
    cpu = rep["cpu"]
    lines = [f"# INT8 kernels vs reference arithmetic on {cpu['model']}", "",
             f"CPU features: {' '.join(cpu['features'])}; onnxruntime {rep['onnxruntime']}; measured {rep['date']}.",
             "", "| bundle | artifact | weights | worst pair sum (limit 32767) | split | n | mean abs dp | "
                 "max abs dp | flips | INT8 p50 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for b in rep["bundles"]:
        for name, a in b["artifacts"].items():
            for split, s in a["splits"].items():
                lines.append(f"| {b['label']} (`{b['bundle_id']}`) | {name} | {a['weights']} | "
                             f"{a['saturation_bound']['worst_pair_sum']} "
                             f"({'safe' if a['saturation_bound']['safe'] else 'can saturate'}) | {split} | {s['n']} | "
                             f"{s['mean_abs_dp']:.4f} | {s['max_abs_dp']:.3f} | {s['flips']} | "
                             f"{a['latency_ms_p50']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> None:
    with figure(path, dpi=110, figsize=(7, 4)) as ax:
        for b in rep["bundles"]:
            for name, a in b["artifacts"].items():
                d = np.sort(np.concatenate([s["abs_dp"] for s in a["splits"].values()]))[::-1]
                ax.plot(np.arange(1, len(d) + 1), np.maximum(d, 1e-7), label=f"{b['label']} {name} "
                        f"({a['weights']} weights)")
        ax.set_yscale("log")
        ax.set_xlabel("image (sorted by |Δp|)")
        ax.set_ylabel("|P(fake) optimized − reference|")
        ax.set_title(f"INT8 kernels vs reference arithmetic, {rep['cpu']['model']}", fontsize=9)
        ax.legend(fontsize=8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", default=[], help="LABEL=DIR (repeatable; default: the embedded one)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "int8_conformance"))
    args = ap.parse_args()

    import onnxruntime

    from aligngemini_sdk.detector import default_bundle_path
    from aligngemini_sdk.device import cpu_info, report_stem

    bundles = [tuple(x.split("=", 1)) for x in args.bundle] or [("default", str(default_bundle_path()))]
    images = {s: split_images(s) for s in SPLITS}
    cpu = cpu_info()
    rep = {"cpu": cpu, "onnxruntime": onnxruntime.__version__, "date": time.strftime("%Y-%m-%d"),
           "bundles": [], "timing": "batch 1, one real crop, blocks of 5 calls interleaved round-robin across bundles"}
    timers: dict = {}
    rep["bundles"] = [measure(label, d, images, timers) for label, d in bundles]
    from aligngemini_sdk.bench import time_interleaved

    times = time_interleaved(timers, blocks=40)
    for b in rep["bundles"]:
        for name, a in b["artifacts"].items():
            a["latency_ms_p50"] = statistics.median(times[f"{b['label']}/{name}"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = report_stem()
    (out / f"{slug}.json").write_text(json.dumps(rep, indent=1))
    (out / f"{slug}.md").write_text(to_markdown(rep))
    plot(rep, out / f"{slug}.png")
    print(to_markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
