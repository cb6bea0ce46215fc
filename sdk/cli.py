"""``aligngemini`` command line: detect, info, verify, sys, export, eval, bench.

Machine-readable output goes to stdout (JSON lines with ``--json``); progress and diagnostics go to
stderr, so ``aligngemini detect DIR --json > results.jsonl`` is safe.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aligngemini_sdk.errors import AlignGeminiError, GateFailedError, ImageError

#: Exit statuses (README "CLI" lists them): 0 every input gave a verdict; 1 an error before any input (bundle,
#: runtime, usage of a library call); 2 bad usage, or no input gave a verdict; 3 an export gate failed; 4 the
#: bundle does not conform on this device (``verify``); 5 some inputs failed, the others gave verdicts.
EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_GATE, EXIT_NONCONFORMING, EXIT_SOME_FAILED = 0, 1, 2, 3, 4, 5
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool cut off by `| head`


def _detector(args: argparse.Namespace) -> Any:
    from aligngemini_sdk.detector import Detector, DetectorOptions

    return Detector(args.bundle, DetectorOptions(device=args.device, budget_ms=args.budget_ms, power=args.power,
                                                 threads=args.threads, pixel_precision=args.precision,
                                                 verbose=args.verbose,
                                                 provenance=not getattr(args, "no_provenance", False),
                                                 trust_anchors=getattr(args, "trust_anchors", None)))


def cmd_detect(args: argparse.Namespace) -> int:
    from aligngemini_sdk.dataset import list_images
    from aligngemini_sdk.progress import Progress

    paths: list[Path] = [p for item in args.inputs for p in list_images(item)]
    if not paths:
        print("no images found", file=sys.stderr)
        return EXIT_BAD_INPUT
    det = _detector(args)
    if args.warmup:
        det.warmup()
    bar = Progress(len(paths), "detect", enabled=None if len(paths) > 1 else False)
    n_bad = 0
    for path in paths:
        try:
            r = det.detect(path)
        except ImageError as exc:
            n_bad += 1
            rec: dict[str, Any] = {"path": str(path), "error": type(exc).__name__, "message": exc.reason}
            print(json.dumps(rec, allow_nan=False) if args.json else f"{path}: ERROR {type(exc).__name__}: {exc.reason}",
                  flush=True)
            bar.update()
            continue
        if args.json:
            d = r.to_dict()
            rec = {"path": str(path), "is_fake": r.is_fake, "label": r.label, "score": round(r.score, 6),
                   "branches": d["branches"], "total_ms": round(r.total_ms, 3), "budget_ms": r.budget_ms,
                   "over_budget": r.over_budget, "bundle_id": r.bundle_id, "provenance": d["provenance"],
                   "decided_by_provenance": r.decided_by_provenance,
                   "detectors": {"is_fake": r.detector_is_fake, "score": r.detector_score}}
            print(json.dumps(rec, allow_nan=False), flush=True)  # RFC 8259: a NaN is an error, never printed
        else:
            sem = (f"semantic {r.semantic.probability:.3f}" if r.semantic.ran
                   else f"semantic skipped ({r.semantic.skip_reason})")
            prov = f" | provenance: {r.decided_by_provenance}" if r.decided_by_provenance else ""
            print(f"{path}: {r.label.upper()} score {r.score:.3f} | pixel {r.pixel.probability:.3f} "
                  f"({r.pixel.ms:.1f} ms) | {sem}{prov} | {r.total_ms:.1f} ms", flush=True)
        bar.update()
    bar.close()
    if n_bad:
        print(f"{n_bad} of {len(paths)} inputs could not be read", file=sys.stderr)
    return EXIT_OK if not n_bad else EXIT_BAD_INPUT if n_bad == len(paths) else EXIT_SOME_FAILED


def cmd_info(args: argparse.Namespace) -> int:
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.detector import default_bundle_path
    from aligngemini_sdk.image import QuantizedInput
    from aligngemini_sdk.manifest import required_features

    b = Bundle.open(args.bundle or default_bundle_path())
    m = b.manifest
    checks = b.verify()
    out: dict[str, Any] = {"bundle_id": m.bundle_id, "name": m.name, "placeholder": m.placeholder,
                           "description": m.description, "path": str(b.source), "fusion": m.fusion.rule,
                           "requires": required_features(m), "files_verified": checks, "branches": {}}
    for name in ("pixel", "semantic"):
        spec = m.branch(name)
        if spec is None:
            continue
        out["branches"][name] = {
            "arch": spec.arch, "default_artifact": spec.default_artifact, "threshold": spec.threshold,
            "artifacts": {a: {"runtime": art.runtime, "precision": art.precision,
                              "size_mb": round(sum(f.bytes for f in art.files.values()) / 1e6, 3),
                              **({"input": art.options["input"]} if "input" in art.options else {})}
                          for a, art in spec.artifacts.items()},
            **({"input": m.pixel.input.__dict__} if name == "pixel" and m.pixel else {}),
            **({"labels": m.semantic.labels} if name == "semantic" and m.semantic else {}),
        }
    out["device_profiles"] = {k: {b2: s.__dict__ for b2, s in v.items()} for k, v in m.device_profiles.items()}
    out["provenance"] = m.provenance
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"bundle   {m.bundle_id}  ({m.name}){'  [PLACEHOLDER: untrained]' if m.placeholder else ''}")
    print(f"path     {b.source}")
    if m.description:
        print(f"about    {m.description}")
    print(f"fusion   {m.fusion.rule}")
    if out["requires"]:
        print(f"requires {', '.join(out['requires'])} (SDK features)")
    for name, br in out["branches"].items():
        print(f"{name:8} arch={br['arch']} default={br['default_artifact']} threshold={br['threshold']}")
        for a, art in br["artifacts"].items():
            q = QuantizedInput.from_options(art)
            takes = f"  input {q.describe()}" if q else ""
            print(f"         - {a:10} {art['runtime']:12} {art['precision']:8} {art['size_mb']:.2f} MB{takes}")
            for line in _artifact_notes(m.branch(name).artifacts[a].options):  # type: ignore[union-attr]
                print(f"           {line}")
    print(f"checksums: {len(checks)} files verified (sha256)")
    for dev, stats in out["device_profiles"].items():
        print(f"profile  {dev}: " + ", ".join(f"{k} p90 {v['p90_ms']:.1f} ms" for k, v in stats.items()))
    return EXIT_OK


def _artifact_notes(options: dict[str, Any]) -> list[str]:
    """The INT8 saturation proof and the golden outputs an artifact carries, one line each."""
    notes = []
    proof = options.get("calibration", {}).get("int8_safety")
    if isinstance(proof, dict):
        notes.append(f"int8 weights {options['calibration'].get('weights', '?')}: "
                     + (f"no CPU kernel can saturate (worst pair sum {proof.get('worst_pair_sum')} <= "
                        f"{proof.get('int16_limit')}, {proof.get('nodes_checked')} nodes)" if proof.get("safe")
                        else f"CAN SATURATE on AVX2 u8s8 kernels: {proof.get('unsafe_nodes')}"))
    golden = options.get("conformance")
    if isinstance(golden, dict):
        notes.append(f"golden outputs: {golden.get('inputs')} inputs, tolerance {golden.get('tolerance', 0):.3g} "
                     "(aligngemini verify)")
    return notes


def cmd_sys(args: argparse.Namespace) -> int:
    from aligngemini_sdk.device import device_key, fingerprint

    fp = fingerprint()
    fp["device_key"] = device_key("cpu")
    if args.json:
        print(json.dumps(fp, indent=2))
        return EXIT_OK
    cpu = fp["cpu"]
    print(f"cpu         {cpu['model']} ({cpu['arch']}), {cpu['usable_cores']} usable / {cpu['logical_cores']} logical cores")
    print(f"features    {' '.join(cpu['features']) or '-'}")
    print(f"os/python   {fp['os']} / {fp['python']}")
    print(f"onnxruntime {fp['onnxruntime']}  providers: {', '.join(fp['onnxruntime_providers'])}")
    print(f"llama.cpp   {fp['llama_cpp'] or 'not installed (pip install aligngemini-sdk[gguf])'}")
    print(f"tensorrt    {fp['tensorrt'] or 'not installed (pip install aligngemini-sdk[tensorrt])'}")
    print(f"device key  {fp['device_key']}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Run the bundle's golden inputs on this device; exit 4 when an artifact's outputs leave their tolerance."""
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.conformance import verify_bundle
    from aligngemini_sdk.detector import default_bundle_path

    rep = verify_bundle(Bundle.open(args.bundle or default_bundle_path()), device=args.device, threads=args.threads)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        cpu = rep.device["cpu"]
        print(f"bundle {rep.bundle_id} on {cpu['model']} [{' '.join(cpu['features'])}], "
              f"onnxruntime {rep.device['onnxruntime']}")
        for a in rep.artifacts:
            mark = {True: "PASS", False: "FAIL", None: "SKIP"}[a.passed]
            print(f"  {mark} {a.branch}/{a.artifact} ({a.runtime}, {a.precision}): {a.detail}")
            if a.saturation != "n/a":
                print(f"       int8 bound: {a.saturation}")
        if not rep.checked:
            print("  no artifact could be checked: nothing vouches for this device", file=sys.stderr)
    return EXIT_OK if rep.passed else EXIT_NONCONFORMING


def cmd_export_pixel(args: argparse.Namespace) -> int:
    from aligngemini_sdk.export.pixel import GateThresholds, PixelExportConfig, default_input, export_pixel
    from aligngemini_sdk.manifest import InputSpec

    spec = default_input(args.arch)
    if args.input_size:
        spec = InputSpec(**{**spec.__dict__, "height": args.input_size, "width": args.input_size,
                            "crop": args.crop or "center"})
    cfg = PixelExportConfig(
        arch=args.arch, weights=args.weights, out=Path(args.out), input=spec,
        precisions=tuple(args.precisions.split(",")), calib=args.calib, val=args.val, holdout=args.holdout,
        exclude_sources=tuple(s for s in args.exclude_sources.split(",") if s),
        calib_method=args.calib_method, target=args.target, int8_scheme=args.int8_scheme, allow_small_calib=args.allow_small_calib,
        gate=GateThresholds(min_agreement=args.min_agreement, max_bacc_drop=args.max_bacc_drop / 100.0),
        trt=args.trt, ladeda_preprocess=args.ladeda_preprocess, name=args.name, model_card=args.model_card,
        max_val=args.max_val, max_calib=args.max_calib, uint8_input=not args.float_input,
        int8_weights=args.int8_weights,
        pixel_input=not (args.float_input or args.quantized_input))
    try:
        report = export_pixel(cfg)
    except GateFailedError as exc:
        print(f"GATE FAILED: {exc}", file=sys.stderr)
        return EXIT_GATE
    print(json.dumps({"bundle": report.bundle, "bundle_id": report.bundle_id,
                      "artifacts": {k: v.passed for k, v in report.artifacts.items()}}))
    return EXIT_OK


def cmd_export_harden(args: argparse.Namespace) -> int:
    from aligngemini_sdk.dataset import list_images, load_collection
    from aligngemini_sdk.export.harden import harden_bundle

    p = Path(args.images)
    images = [s.path for s in load_collection(p)] if p.suffix.lower() == ".csv" else list_images(p)
    reps = harden_bundle(args.bundle, args.out, images[: args.max_images])
    print(json.dumps({"bundle": args.out, "artifacts": [r.__dict__ for r in reps]}))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from aligngemini_sdk.export.archs import arch_names, get_arch

    p = argparse.ArgumentParser(prog="aligngemini", description="AlignGemini AI-generated image detector SDK")
    p.add_argument("-v", "--verbose", action="store_true", help="show runtime logs (llama.cpp, ORT)")
    sub = p.add_subparsers(dest="cmd", required=True)

    def runtime_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bundle", help="bundle dir or .tar (default: the embedded default bundle)")
        sp.add_argument("--device", default="auto", help="auto, cpu, cuda, tensorrt, coreml, openvino, ...")
        sp.add_argument("--threads", type=int, default=None)
        sp.add_argument("--precision", default=None, help="pixel artifact: int8, fp32, fp16, tensorrt")
        sp.add_argument("--budget-ms", type=float, default=None, help="per-image latency budget")
        sp.add_argument("--power", default="full", choices=["full", "balanced", "low"])

    d = sub.add_parser("detect", help="detect AI-generated images",
                       epilog="exit status: 0 every input gave a verdict; 5 some inputs failed (each reported, the "
                              "rest went on); 2 no input gave a verdict or bad usage; 1 bundle or runtime error")
    d.add_argument("inputs", nargs="+", help="image files or directories")
    runtime_opts(d)
    d.add_argument("--json", action="store_true", help="JSON lines on stdout")
    d.add_argument("--trust-anchors", help="PEM file of C2PA trust anchors (default: none, every signature untrusted)")
    d.add_argument("--no-provenance", action="store_true", help="do not read C2PA / generator metadata")
    d.add_argument("--warmup", action="store_true", help="measure branch latencies before the first image")
    d.set_defaults(func=cmd_detect)

    i = sub.add_parser("info", help="summarise a bundle and verify its checksums")
    i.add_argument("bundle", nargs="?")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    vf = sub.add_parser("verify", help="check this device reproduces the bundle's golden outputs "
                                       "(exit 0 pass, 4 an artifact does not conform or none could be checked)")
    vf.add_argument("bundle", nargs="?", help="bundle dir or .tar (default: the embedded default bundle)")
    vf.add_argument("--device", default="cpu")
    vf.add_argument("--threads", type=int, default=None)
    vf.add_argument("--json", action="store_true")
    vf.set_defaults(func=cmd_verify)

    s = sub.add_parser("sys", help="installed runtimes, providers, CPU features")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sys)

    e = sub.add_parser("export", help="export models into bundles (needs aligngemini-sdk[export])")
    esub = e.add_subparsers(dest="what", required=True)
    ep = esub.add_parser("pixel", help="pixel expert -> ONNX FP32/FP16/INT8 (+TensorRT) with accuracy gate")
    ep.add_argument("--arch", required=True, choices=arch_names(),
                    help="; ".join(f"{n}: {get_arch(n).help}" for n in arch_names()))
    ep.add_argument("--weights", required=True)
    ep.add_argument("--out", required=True)
    ep.add_argument("--calib", help="calibration images: DIR with real/ fake/, or CSV")
    ep.add_argument("--val", help="validation images (default: hold out part of --calib)")
    ep.add_argument("--holdout", type=float, default=0.3)
    ep.add_argument("--exclude-sources", default="", help="comma list of sources to leave out (e.g. cifake)")
    ep.add_argument("--precisions", default="fp32,fp16,int8")
    ep.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ep.add_argument("--target", default="cpu", choices=["cpu", "tensorrt"])
    ep.add_argument("--int8-scheme", default="auto", choices=["auto", "static", "dynamic"],
                    help="auto: dynamic INT8 for transformer (MatMul-dominated) graphs on CPU, static QDQ otherwise")
    ep.add_argument("--int8-weights", default="auto", choices=["auto", "s7", "u8", "s8"],
                    help="auto (default): int8 weights in [-64, 64] (s7), or uint8 (u8) when s7 misses the gate; both "
                         "exact on every CPU kernel. s8 ([-127, 127]) is repaired to s7 when an AVX2 kernel could "
                         "saturate")
    ep.add_argument("--float-input", action="store_true",
                    help="static INT8: keep the float NCHW input instead of the quantized uint8 NHWC one the SDK "
                         "computes from the crop (for callers that feed their own tensors)")
    ep.add_argument("--quantized-input", action="store_true",
                    help="static INT8: do not try folding mean/std into the first Conv (the artifact taking the "
                         "crop's own bytes, shipped when it passes the gate and is no further from FP32)")
    ep.add_argument("--allow-small-calib", action="store_true")
    ep.add_argument("--min-agreement", type=float, default=0.98)
    ep.add_argument("--max-bacc-drop", type=float, default=1.0, help="points")
    ep.add_argument("--max-val", type=int, default=400)
    ep.add_argument("--max-calib", type=int, default=352)
    ep.add_argument("--input-size", type=int, default=None)
    ep.add_argument("--crop", default=None, choices=["center", "none"])
    ep.add_argument("--trt", action="store_true", help="also build a TensorRT engine (needs TensorRT + GPU)")
    ep.add_argument("--ladeda-preprocess", default="grad_diag")
    ep.add_argument("--name")
    ep.add_argument("--model-card")
    ep.set_defaults(func=cmd_export_pixel)

    eh = esub.add_parser("harden", help="make an existing INT8 bundle give the same answers on every CPU: int8 weights "
                                        "an AVX2 kernel could saturate re-encoded losslessly as uint8, with the "
                                        "proof and golden outputs")
    eh.add_argument("bundle")
    eh.add_argument("--out", required=True, help="new bundle directory (or the bundle itself, to harden in place)")
    eh.add_argument("--images", required=True, help="real images (DIR or CSV) to check the re-encoding against")
    eh.add_argument("--max-images", type=int, default=150)
    eh.set_defaults(func=cmd_export_harden)

    _register_optional(sub)
    return p


def _register_optional(sub: Any) -> None:
    """Commands defined in their own modules (eval, bench, export vlm) add themselves here."""
    from aligngemini_sdk import commands

    commands.register(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[aligngemini] %(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except AlignGeminiError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, ImageError) else EXIT_ERROR
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader went away (`aligngemini detect DIR | head`): stop quietly, as Unix tools do; point stdout
        # at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
