"""``aligngemini export pixel|harden|vlm``: models into bundles (needs the ``[export]`` extra; the parser does not)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aligngemini_sdk.cli.common import comma_list
from aligngemini_sdk.cli.exit_codes import EXIT_GATE, EXIT_OK
from aligngemini_sdk.errors import GateFailedError
from aligngemini_sdk.export.archs import arch_names, get_arch
from aligngemini_sdk.manifest import CROP_POLICIES, JPEG_DOWNSCALE, RESIZE_POLICIES

R = TypeVar("R")


def register(sub: Any) -> None:
    e = sub.add_parser("export", help="export models into bundles (needs aligngemini-sdk[export])")
    esub = e.add_subparsers(dest="what", required=True)
    _register_pixel(esub)
    _register_calibrate_and_harden(esub)
    _register_vlm(esub)
    es = esub.add_parser("sign", help="sign a bundle directory's manifest with an Ed25519 private key (writes "
                                      "manifest.sig; devices check it with --trusted-key / DetectorOptions.trusted_keys)")
    es.add_argument("bundle")
    es.add_argument("--key", required=True, help="unencrypted PEM Ed25519 private key")
    es.set_defaults(func=cmd_export_sign)


def _register_pixel(esub: Any) -> None:
    ep = esub.add_parser("pixel", help="pixel expert -> ONNX FP32/FP16/INT8 (+TensorRT) with accuracy gate")
    ep.add_argument("--arch", required=True, choices=arch_names(),
                    help="; ".join(f"{n}: {get_arch(n).help}" for n in arch_names()))
    ep.add_argument("--weights", required=True)
    ep.add_argument("--branch", default="pixel", choices=["pixel", "semantic"],
                    help="semantic: export a whole-image classifier as the bundle's semantic branch (the two-branch "
                         "design without a VLM; --input-size with --crop none resizes the whole image)")
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
    ep.add_argument("--crop", default=None, choices=list(CROP_POLICIES))
    ep.add_argument("--jpeg-downscale", default="none", choices=list(JPEG_DOWNSCALE),
                    help="dct: a resizing branch takes JPEGs decoded at the largest 1/2, 1/4 or 1/8 DCT scale that "
                         "keeps its input size (4-8x less decoding for camera photos; declared in the manifest, "
                         "the gate measures it)")
    ep.add_argument("--resize", default=None, choices=list(RESIZE_POLICIES),
                    help="exact: the whole image resized to --input-size (a semantic classifier's view); shorter: the "
                         "shorter side, then the crop; none (pixel experts): never resample")
    ep.add_argument("--trt", action="store_true", help="also build a TensorRT engine (needs TensorRT + GPU)")
    ep.add_argument("--ladeda-preprocess", default="grad_diag")
    ep.add_argument("--name")
    ep.add_argument("--model-card")
    ep.set_defaults(func=cmd_export_pixel)


def _percent_below_100(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 100.0:
        raise argparse.ArgumentTypeError(f"a percent in [0, 100) (0: the empirical quantile), got {text}")
    return value


def _register_calibrate_and_harden(esub: Any) -> None:
    ec = esub.add_parser("calibrate", help="learn a logistic fusion of the two branches and choose operating points "
                                           "(thresholds for target real-photo false-positive rates) on labelled "
                                           "data; rewrites the manifest's fusion section only")
    ec.set_defaults(func=cmd_export_calibrate)
    ec.add_argument("bundle")
    ec.add_argument("--threads", type=int, default=None)
    ec.add_argument("--fusion", default=None, choices=["logistic", "or", "mean"],
                    help="logistic: fit weights on --data (needs both branches); default: keep the bundle's rule")
    ec.add_argument("--data", required=True, help="labelled validation images (DIR with real/ fake/, or CSV)")
    ec.add_argument("--fpr", default="1,5,10", help="target false-positive rates in percent (default 1,5,10)")
    ec.add_argument("--default", default="fpr5", help="the operating point detect() uses by default ('' for none)")
    ec.add_argument("--confidence", type=_percent_below_100, default=95.0,
                    help="percent: each point keeps its rate on further photos like --data's real ones with this "
                         "confidence (default 95; needs >= 299 / 59 / 29 real images for fpr1 / fpr5 / fpr10); 0: "
                         "the empirical quantile of these images, no promise beyond them")

    eh = esub.add_parser("harden", help="make an existing INT8 bundle give the same answers on every CPU: int8 weights "
                                        "an AVX2 kernel could saturate re-encoded losslessly as uint8, with the "
                                        "proof and golden outputs")
    eh.add_argument("bundle")
    eh.add_argument("--out", required=True, help="new bundle directory (or the bundle itself, to harden in place)")
    eh.add_argument("--images", required=True, help="real images (DIR or CSV) to check the re-encoding against")
    eh.add_argument("--max-images", type=int, default=150)
    eh.set_defaults(func=cmd_export_harden)


def _register_vlm(esub: Any) -> None:
    v = esub.add_parser("vlm", help="VLM -> GGUF (quantized) + mmproj via llama.cpp, with parity gate")
    v.add_argument("--hf", required=True, help="transformers model directory")
    v.add_argument("--lora", help="peft LoRA adapter directory to merge first")
    v.add_argument("--quant", default="Q4_K_M", help="comma list: Q8_0, Q6_K, Q5_K_M, Q4_K_M, ...")
    v.add_argument("--mmproj-type", default="f16", choices=["f16", "q8_0", "f32"])
    v.add_argument("--imatrix")
    v.add_argument("--llama-cpp", help="llama.cpp checkout with convert_hf_to_gguf.py (default: from the sdist)")
    v.add_argument("--parity-images", help="folder of images for the parity gate")
    v.add_argument("--question", help="the question asked to the VLM")
    v.add_argument("--keep-f16", action="store_true", help="also ship the f16 text model")
    v.add_argument("--out", required=True)
    v.set_defaults(func=cmd_export_vlm)


def cmd_export_pixel(args: argparse.Namespace) -> int:
    from aligngemini_sdk.export.pixel import GateThresholds, PixelExportConfig, default_input, export_pixel
    from aligngemini_sdk.manifest import InputSpec

    spec = default_input(args.arch)
    if args.input_size:
        spec = InputSpec(**{**spec.__dict__, "height": args.input_size, "width": args.input_size,
                            "crop": args.crop or "center", "resize": args.resize or spec.resize})
    if args.jpeg_downscale != "none":
        if spec.resize == "none":
            raise SystemExit("--jpeg-downscale dct needs a branch that resizes (--resize exact or shorter)")
        spec = InputSpec(**{**spec.__dict__, "jpeg_downscale": args.jpeg_downscale})
    cfg = PixelExportConfig(
        arch=args.arch, weights=args.weights, out=Path(args.out), input=spec, branch=args.branch,
        precisions=tuple(args.precisions.split(",")), calib=args.calib, val=args.val, holdout=args.holdout,
        exclude_sources=comma_list(args.exclude_sources),
        calib_method=args.calib_method, target=args.target, int8_scheme=args.int8_scheme, allow_small_calib=args.allow_small_calib,
        gate=GateThresholds(min_agreement=args.min_agreement, max_bacc_drop=args.max_bacc_drop / 100.0),
        trt=args.trt, ladeda_preprocess=args.ladeda_preprocess, name=args.name, model_card=args.model_card,
        max_val=args.max_val, max_calib=args.max_calib, uint8_input=not args.float_input,
        int8_weights=args.int8_weights,
        pixel_input=not (args.float_input or args.quantized_input))
    return _gated(lambda: export_pixel(cfg), lambda r: {"bundle": r.bundle, "bundle_id": r.bundle_id,
                                                        "artifacts": {k: v.passed for k, v in r.artifacts.items()}})


def _gated(export: Callable[[], R], summary: Callable[[R], dict[str, Any]]) -> int:
    """Run an export: its summary as JSON on stdout, or exit 3 when a gate failed (what passed was written)."""
    try:
        rep = export()
    except GateFailedError as exc:
        print(f"GATE FAILED: {exc}", file=sys.stderr)
        return EXIT_GATE
    print(json.dumps(summary(rep)))
    return EXIT_OK


def cmd_export_calibrate(args: argparse.Namespace) -> int:
    from aligngemini_sdk.export.calibrate import calibrate

    fprs = [float(x) / 100.0 for x in comma_list(args.fpr)]
    m = calibrate(args.bundle, args.data, fprs=fprs, default=args.default or None, fusion=args.fusion,
                  threads=args.threads, confidence=args.confidence / 100.0 or None)
    print(json.dumps({"bundle": args.bundle, "bundle_id": m.bundle_id, "fusion": m.fusion.rule,
                      "weights": m.fusion.weights, "bias": m.fusion.bias,
                      "default_operating_point": m.fusion.default_operating_point,
                      "operating_points": {n: {**{k: getattr(p, k) for k in ("pixel", "semantic", "fusion")},
                                               **p.measured} for n, p in m.fusion.operating_points.items()}}))
    return EXIT_OK


def cmd_export_harden(args: argparse.Namespace) -> int:
    from aligngemini_sdk.dataset import list_images, load_collection
    from aligngemini_sdk.export.harden import harden_bundle

    p = Path(args.images)
    images = [s.path for s in load_collection(p)] if p.suffix.lower() == ".csv" else list_images(p)
    reps = harden_bundle(args.bundle, args.out, images[: args.max_images])
    print(json.dumps({"bundle": args.out, "artifacts": [r.__dict__ for r in reps]}))
    return EXIT_OK


def cmd_export_sign(args: argparse.Namespace) -> int:
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.signature import sign_manifest

    Bundle.open(args.bundle).verify()  # sign only a bundle whose files match its manifest
    print(json.dumps({"bundle": args.bundle, "key_id": sign_manifest(args.bundle, args.key)}))
    return EXIT_OK


def cmd_export_vlm(args: argparse.Namespace) -> int:
    from aligngemini_sdk.export.vlm import VlmExportConfig, export_vlm

    cfg = VlmExportConfig(hf=Path(args.hf), out=Path(args.out), lora=Path(args.lora) if args.lora else None,
                          quants=tuple(q.strip() for q in args.quant.split(",")), mmproj_type=args.mmproj_type,
                          imatrix=Path(args.imatrix) if args.imatrix else None,
                          llama_cpp=Path(args.llama_cpp) if args.llama_cpp else None,
                          parity_images=sorted(Path(args.parity_images).glob("*")) if args.parity_images else [],
                          keep_reference=args.keep_f16)
    if args.question:
        cfg.question = args.question
    return _gated(lambda: export_vlm(cfg), lambda r: {"bundle": args.out, "bundle_id": r.bundle_id,
                                                      "parity": {q: e.max_abs_delta for q, e in r.types.items()}})
