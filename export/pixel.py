"""Export a pixel-artifact expert to a verified bundle: ONNX FP32 / FP16 / INT8 (+ TensorRT engine),
each checked against the PyTorch reference by the validation gate before it is allowed into the bundle.

    aligngemini export pixel --arch ladeda --weights W.pth --calib DIR --val DIR --out BUNDLE

Sources (one file per family): ``ladeda`` (:mod:`.ladeda`), ``dinov2``/``dda`` (:mod:`.dinov2`),
``module`` (any ``nn.Module``/TorchScript with one fake-logit output).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import file_entry, put_branch
from ..dataset import Sample, load_collection, split_by_hash
from ..errors import ExportError, GateFailedError, ImageError
from ..image import QuantizedInput, fit_to_spec, load_image, normalize
from ..manifest import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Artifact, InputSpec, PixelBranchSpec
from ..metrics import binary_metrics, fmt, markdown_table
from ..progress import log_step, track
from .quantize import DEFAULT_OP_TYPES, DYNAMIC_OP_TYPES
from .saturation import SAFE_WEIGHT_FORMATS, WEIGHT_FORMATS, SaturationProof, prove_file

ARCHS = ("ladeda", "dinov2", "dda", "module")
EXPORTER_VERSION = "0.1.0"


@dataclass
class GateThresholds:
    """Accuracy gate: INT8 (and FP16) must agree with the PyTorch reference on the validation set."""

    min_agreement: float = 0.98  # decision agreement with the reference
    max_bacc_drop: float = 0.01  # balanced-accuracy drop vs the reference (fraction, 0.01 = 1 point)
    fp32_max_delta: float = 1e-3  # max |Δprobability| FP32 ONNX vs PyTorch


@dataclass
class PixelExportConfig:
    arch: str
    out: Path
    weights: str | None = None
    module: Any = None  # an nn.Module for arch="module" through the Python API
    input: InputSpec | None = None
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    calib: str | None = None
    val: str | None = None
    holdout: float = 0.3
    exclude_sources: tuple[str, ...] = ()
    calib_method: str = "minmax"
    target: str = "cpu"  # "tensorrt": symmetric INT8 (zero points 0) for explicit quantization
    allow_small_calib: bool = False
    min_calib: int = 100
    max_calib: int = 352
    max_val: int = 400
    gate: GateThresholds = field(default_factory=GateThresholds)
    fallback_rounds: int = 5
    quantize_op_types: tuple[str, ...] | None = DEFAULT_OP_TYPES  # None: every op (ORT's default)
    #: "auto": dynamic for MatMul-dominated graphs (ViTs) on CPU, static QDQ otherwise (see int8_scheme)
    int8_scheme: str = "auto"
    #: INT8 weight format (saturation.WEIGHT_FORMATS). "auto": "s7" (int8 in [-64, 64]), and "u8" (uint8) when s7
    #: misses the gate; both are exact on every CPU kernel. "s8" is repaired to "s7" when the per-node bound shows
    #: an AVX2 kernel could saturate (it always does for per-channel weights, whose largest weight is 127)
    int8_weights: str = "auto"
    bias_correction: bool = True  # fold the mean INT8 logit shift back (label-free, calibration images)
    #: static INT8 on CPU: the artifact takes the quantized uint8 NHWC input the SDK computes from the crop's
    #: bytes (bit-identical outputs, a quarter of the input bytes; see quantize.to_uint8_input)
    uint8_input: bool = True
    #: ...and, better still, the crop's own bytes: mean/std folded into the first Conv (quantize.fold_input_normalization),
    #: shipped only if that file passes the gate and is no further from FP32 (see _pixel_input_candidate)
    pixel_input: bool = True
    fallback_candidates: int = 8
    search_images: int = 96
    threshold: float = 0.5
    opset: int = 17
    ladeda_preprocess: str = "grad_diag"
    lora_alpha: float = 1.0
    trt: bool = False
    name: str | None = None
    description: str = ""
    model_card: str | None = None  # path to a markdown file copied into the bundle
    placeholder: bool = False
    seed: int = 0
    extra_provenance: dict[str, Any] = field(default_factory=dict)


def default_input(arch: str) -> InputSpec:
    if arch == "ladeda":  # authors' evaluation: full image, ImageNet normalisation
        return InputSpec(height=0, width=0, crop="none", resize="none", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         max_side=1024)
    return InputSpec(height=336, width=336, crop="center", resize="none", mean=CLIP_MEAN, std=CLIP_STD)


def load_source(cfg: PixelExportConfig) -> Any:
    """The PyTorch reference model (eval mode) for ``cfg.arch``."""
    import torch

    if cfg.arch == "ladeda":
        from .ladeda import load_ladeda

        return load_ladeda(_need(cfg.weights, "--weights"), cfg.ladeda_preprocess)
    if cfg.arch == "dinov2":
        from .dinov2 import load_dinov2_dir

        return load_dinov2_dir(_need(cfg.weights, "--weights"))
    if cfg.arch == "dda":
        from .dinov2 import load_dda

        return load_dda(_need(cfg.weights, "--weights"), lora_alpha=cfg.lora_alpha)
    if cfg.arch == "module":
        if cfg.module is not None:
            return cfg.module.eval()
        path = _need(cfg.weights, "--weights")
        try:
            return torch.jit.load(path, map_location="cpu").eval()  # TorchScript: a zip of code+tensors, no pickle
        except Exception as exc:
            raise ExportError(f"{path}: not a TorchScript file ({exc}); pass an nn.Module through the Python API") from exc
    raise ExportError(f"unknown arch {cfg.arch!r}; known: {', '.join(ARCHS)}")


def _need(v: str | None, flag: str) -> str:
    if not v:
        raise ExportError(f"{flag} is required for this architecture")
    return v


def export_onnx(model: Any, path: Path, spec: InputSpec, opset: int = 17) -> list[Path]:
    """FP32 ONNX with a dynamic batch axis (and dynamic H/W for full-image specs). Models over 2 GB are
    re-saved with external data; returns the files written."""
    import onnx
    import torch

    h, w = (spec.height, spec.width) if spec.fixed_size else (224, 224)
    x = torch.randn(1, 3, h, w)
    axes: dict[int, str] = {0: "batch"} if spec.fixed_size else {0: "batch", 2: "height", 3: "width"}
    # A model may offer ``fixed_input_size(h, w)``: a context in which it traces without size-dependent glue
    # (DINOv2's position-embedding interpolation); only for fixed-size specs, whose H/W the graph never changes.
    fixed = getattr(model, "fixed_input_size", None) if spec.fixed_size else None
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp, (fixed(h, w) if fixed else contextlib.nullcontext()):
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(model, (x,), os.fspath(raw), input_names=["pixel_values"], output_names=["fake_logit"],
                          dynamic_axes={"pixel_values": axes, "fake_logit": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
        proto = onnx.load(os.fspath(raw))
        big = proto.ByteSize() > 1_900_000_000 if proto.ByteSize() >= 0 else True
        if big:
            onnx.save(proto, os.fspath(path), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=path.name + ".data")
            return [path, path.with_name(path.name + ".data")]
        onnx.save(proto, os.fspath(path))
    return [path]


def _fitted(samples: list[Sample], spec: InputSpec, desc: str) -> tuple[list[np.ndarray], list[Sample]]:
    """The model-sized uint8 crops of the readable samples (copies: the decoded images are not kept)."""
    out, kept = [], []
    for s in track(samples, desc=desc):
        try:
            out.append(np.ascontiguousarray(fit_to_spec(load_image(s.path).rgb, spec)))
            kept.append(s)
        except ImageError as exc:
            log_step(f"skipping unreadable image {exc}")
    return out, kept


def _stratified(samples: list[Sample], k: int, seed: int) -> list[Sample]:
    if len(samples) <= k:
        return samples
    rng = random.Random(seed)
    real = [s for s in samples if s.label == 0]
    fake = [s for s in samples if s.label == 1]
    rng.shuffle(real)
    rng.shuffle(fake)
    kr = min(len(real), max(k // 2, k - len(fake)))
    return real[:kr] + fake[:k - kr]


def _torch_probs(model: Any, tensors: list[np.ndarray]) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for t in tensors:
            out.append(float(torch.sigmoid(model(torch.from_numpy(t)[None]).reshape(-1)[0])))
    return np.asarray(out)


def _ort_eval(path: Path, crops: list[np.ndarray], spec: InputSpec, quantized: QuantizedInput | None = None,
              threads: int | None = None, reference: bool = False) -> tuple[np.ndarray, float]:
    """Probabilities and median batch-1 latency (ms, model call only) of an ONNX file on fitted crops,
    through the SDK's own runtime and input preparation; ``reference``: the graph's reference arithmetic
    (optimizations off), what every CPU computes for an INT8 file no kernel can saturate."""
    from ..runtimes.base import logits_to_probability
    from ..runtimes.onnxruntime import OnnxRuntimePixel

    rt = OnnxRuntimePixel(path, spec, device="cpu", threads=threads, input_quantization=quantized,
                          reference_arithmetic=reference)
    probs, times = [], []
    for crop in crops:
        [(_, batch)] = rt.prepare([crop])
        t0 = time.perf_counter()
        y = rt.run_tensor(batch)
        times.append((time.perf_counter() - t0) * 1e3)
        probs.append(float(logits_to_probability(y, 1)[0]))
    return np.asarray(probs), statistics.median(times[1:] or times)


def _pixel_input_candidate(fp32: Path, int8: Path, spec: InputSpec, calib_crops: list[np.ndarray],
                           entry: dict[str, Any], quantized: QuantizedInput, *, check: Any, quantize: Any,
                           bias: Any, bias_fix: dict[str, float], distance: Any) -> tuple[dict[str, Any], QuantizedInput]:
    """One more INT8 candidate after the quantized-input file passed: the same quantization (same calibration
    images, same nodes kept in float, same bias correction) of a graph that reads the crop's bytes
    (:func:`~.quantize.fold_input_normalization`). It replaces ``int8`` only if it passes the same gate *and*
    is no further from FP32 on the label-free search split (``distance``: mean |Δp|) than ``int8`` -- a faster
    input must not cost fidelity; else ``int8`` stays as it is. Returns the gate entry and the input
    description of the file that ships."""
    from ..image import InputQuantizer
    from .quantize import fold_input_normalization, to_uint8_input

    folded, cand = int8.with_name("folded.fp32.onnx"), int8.with_name("pixels." + int8.name)
    try:
        pixels = fold_input_normalization(fp32, folded, spec)
        if pixels is None:
            log_step("first node is not a plain Conv on the input: keeping the quantized input")
            return entry, quantized
        log_step(f"folding mean/std into the first Conv (input = RGB pixel - {pixels.zero_point}, border "
                 f"{pixels.pad} of RGB {pixels.fill}); quantizing and gating it")
        canvas = InputQuantizer(spec, pixels)
        z = np.float32(pixels.zero_point)
        calib_u = [canvas(c).transpose(2, 0, 1).astype(np.float32) - z for c in calib_crops]
        quantize(folded, cand, calib_u, pixels)
        if bias is not None:
            bias_fix[cand.name] = bias(cand, calib_u)
        got = to_uint8_input(cand, cand)
        if got is None or (got.scale, got.zero_point) != (pixels.scale, pixels.zero_point):
            log_step(f"pixel-input graph did not quantize its input as (1, {pixels.zero_point}): keeping the "
                     "quantized input")
            return entry, quantized
        near = {"quantized": distance(int8, quantized), "pixels": distance(cand, pixels)}
        e = check(cand, pixels)
        e["quantized_input_agreement"] = entry.get("agreement")
        e["float_input_agreement"] = entry.get("float_input_agreement")
        e["search_mean_abs_dp"] = near
        if near["pixels"] > near["quantized"]:
            e["passed"], e["reasons"] = False, [f"search-split mean |Δp| to FP32 {near['pixels']:.4f} > "
                                                f"{near['quantized']:.4f} with the quantized input"]
        if not e["passed"]:
            log_step(f"pixel input not shipped ({'; '.join(e['reasons'])}): keeping the quantized input")
            entry["pixel_input"] = {"rejected": e["reasons"], "agreement": e["agreement"], "search_mean_abs_dp": near}
            return entry, quantized
        cand.replace(int8)
        if cand.name in bias_fix:
            bias_fix[int8.name] = bias_fix.pop(cand.name)
        log_step(f"INT8 takes the crop's RGB bytes (agreement {e['agreement']:.2%}, search-split mean |Δp| "
                 f"{near['pixels']:.4f}; quantized input {entry.get('agreement', 0):.2%}, {near['quantized']:.4f})")
        return e, pixels
    finally:
        folded.unlink(missing_ok=True)
        cand.unlink(missing_ok=True)


def kernels_vs_reference(optimized: np.ndarray, reference: np.ndarray, threshold: float) -> dict[str, Any]:
    """How far this machine's optimized kernels are from the file's reference arithmetic (probabilities)."""
    from ..device import cpu_label

    d = np.abs(optimized - reference)
    return {"mean_abs_dp": float(d.mean()) if len(d) else 0.0, "max_abs_dp": float(d.max()) if len(d) else 0.0,
            "flips": int(np.sum((optimized > threshold) != (reference > threshold))), "cpu": cpu_label()}


def quantize_safely(quantize: Any, dst: Path, weights: str) -> tuple[str, SaturationProof]:
    """``quantize(weights)`` writes ``dst``; when the per-node bound shows a CPU kernel could saturate, repair by
    re-quantizing with "s7" weights. Returns the weight format used and the proof of the file written."""
    quantize(weights)
    proof = prove_file(dst)
    if not proof.safe and weights not in SAFE_WEIGHT_FORMATS:
        log_step(f"{proof.reason()}; repairing: re-quantizing with s7 weights ({WEIGHT_FORMATS['s7']})")
        weights = "s7"
        quantize(weights)
        proof = prove_file(dst)
    return weights, proof


def gate_report(ref: np.ndarray, probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    m = binary_metrics(labels, probs, threshold)
    return {"max_abs_delta": float(np.max(np.abs(probs - ref))) if len(ref) else 0.0,
            "agreement": float(np.mean((probs > threshold) == (ref > threshold))) if len(ref) else 1.0,
            "balanced_accuracy": m["balanced_accuracy"], "auc": m["auc"],
            "acc_real": m["acc_real"], "acc_fake": m["acc_fake"]}


def export_pixel(cfg: PixelExportConfig) -> dict[str, Any]:
    """Run the whole export; returns the gate report. Raises GateFailedError (after writing the bundle
    with the artifacts that passed) when an artifact misses its gate."""
    import torch

    torch.manual_seed(cfg.seed)
    spec = cfg.input or default_input(cfg.arch)
    out = Path(cfg.out)
    pix_dir = out / "pixel"
    pix_dir.mkdir(parents=True, exist_ok=True)
    log_step(f"loading {cfg.arch} source model")
    model = load_source(cfg)
    n_params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None

    # -- data ----------------------------------------------------------------------------------------
    calib_samples: list[Sample] = []
    val_samples: list[Sample] = []
    if cfg.calib:
        calib_samples = load_collection(cfg.calib, cfg.exclude_sources)
    if cfg.val:
        val_samples = load_collection(cfg.val, cfg.exclude_sources)
    if cfg.calib and (not cfg.val or Path(cfg.val).resolve() == Path(cfg.calib).resolve()):
        val_samples, calib_samples = split_by_hash(calib_samples, cfg.holdout)
        log_step(f"validation = {len(val_samples)} images held out of --calib by hash ({cfg.holdout:.0%})")
    overlap = {s.path for s in calib_samples} & {s.path for s in val_samples}
    if overlap:
        log_step(f"warning: {len(overlap)} images are in both calibration and validation sets")
    if "int8" in cfg.precisions:
        if not calib_samples:
            raise ExportError("INT8 needs --calib DIR (real/ and fake/ images)")
        if len(calib_samples) < cfg.min_calib and not cfg.allow_small_calib:
            raise ExportError(f"only {len(calib_samples)} calibration images; at least {cfg.min_calib} are needed "
                              "for a trustworthy INT8 calibration (--allow-small-calib to override)")
    calib_samples = _stratified(calib_samples, cfg.max_calib, cfg.seed)
    val_samples = _stratified(val_samples, cfg.max_val, cfg.seed + 1)
    val_fit, val_kept = _fitted(val_samples, spec, "validation images")
    val_t = [normalize(f, spec) for f in val_fit]
    labels = np.asarray([s.label for s in val_kept])

    # -- FP32 ----------------------------------------------------------------------------------------
    log_step("exporting ONNX FP32")
    fp32 = pix_dir / "model.fp32.onnx"
    fp32_files = export_onnx(model, fp32, spec, cfg.opset)
    ref = _torch_probs(model, val_t) if val_t else np.zeros(0)
    report: dict[str, Any] = {"n_val": len(val_t), "n_calib": len(calib_samples), "threshold": cfg.threshold,
                              "gate": dataclasses.asdict(cfg.gate), "artifacts": {}}
    if val_t:
        report["reference"] = {k: v for k, v in gate_report(ref, ref, labels, cfg.threshold).items()
                               if k in ("balanced_accuracy", "auc", "acc_real", "acc_fake")}
    artifacts: dict[str, Artifact] = {}
    failures: list[str] = []
    ref_bacc = report.get("reference", {}).get("balanced_accuracy")

    def check(name: str, files: list[Path], precision: str, is_fp32: bool = False,
              quantized: QuantizedInput | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"size_mb": round(sum(f.stat().st_size for f in files) / 1e6, 3)}
        proof = prove_file(files[0]) if precision == "int8" else None
        if proof is not None:
            entry["int8_safety"] = proof.to_dict()
        if val_t:
            # INT8 is judged on the file's reference arithmetic, which every CPU reproduces once no kernel can
            # saturate (the proof above); this machine's own kernels are measured against it and recorded
            probs, ms = _ort_eval(files[0], val_fit, spec, quantized)
            if proof is not None:
                gated, _ = _ort_eval(files[0], val_fit, spec, quantized, reference=True)
                entry["kernels_vs_reference"] = kernels_vs_reference(probs, gated, cfg.threshold)
                probs = gated
            entry.update(gate_report(ref, probs, labels, cfg.threshold), latency_ms_p50=round(ms, 3))
            reasons = [proof.reason()] if proof is not None and not proof.safe else []
            if is_fp32 and entry["max_abs_delta"] > cfg.gate.fp32_max_delta:
                reasons.append(f"max|Δp| {entry['max_abs_delta']:.2e} > {cfg.gate.fp32_max_delta:.0e}")
            if not is_fp32 and entry["agreement"] < cfg.gate.min_agreement:
                reasons.append(f"agreement {entry['agreement']:.2%} < {cfg.gate.min_agreement:.0%}")
            if (not is_fp32 and ref_bacc is not None and entry["balanced_accuracy"] is not None
                    and ref_bacc - entry["balanced_accuracy"] > cfg.gate.max_bacc_drop):
                reasons.append(f"balanced accuracy drop {100 * (ref_bacc - entry['balanced_accuracy']):.1f} pts "
                               f"> {100 * cfg.gate.max_bacc_drop:.1f}")
            entry["passed"], entry["reasons"] = not reasons, reasons
        elif proof is not None and not proof.safe:
            entry["passed"], entry["reasons"] = False, [proof.reason()]
        else:
            entry["passed"], entry["reasons"] = None, ["no validation data: gate not run"]
        report["artifacts"][name] = entry
        return entry

    def add(name: str, files: list[Path], precision: str, **options: Any) -> None:
        roles = {"model": files[0], **{f"external_data{i}": f for i, f in enumerate(files[1:])}}
        artifacts[name] = Artifact(runtime="onnxruntime", precision=precision,
                                   files={r: file_entry(out, f.relative_to(out).as_posix()) for r, f in roles.items()},
                                   options=options)

    if "fp32" in cfg.precisions or "int8" in cfg.precisions or "fp16" in cfg.precisions:
        e = check("fp32", fp32_files, "fp32", is_fp32=True)
        if e["passed"] is False:
            failures.append(f"fp32: {'; '.join(e['reasons'])}")
        if "fp32" in cfg.precisions and e["passed"] is not False:
            add("fp32", fp32_files, "fp32")

    if "fp16" in cfg.precisions:
        from .quantize import to_fp16

        log_step("converting to FP16")
        fp16 = to_fp16(fp32, pix_dir / "model.fp16.onnx")
        e = check("fp16", [fp16], "fp16")
        if e["passed"] is False:
            failures.append(f"fp16: {'; '.join(e['reasons'])}")
            fp16.unlink()
        else:
            add("fp16", [fp16], "fp16")

    if "int8" in cfg.precisions:
        from .quantize import (
            correct_output_bias,
            int8_scheme,
            model_logits,
            quantize_int8,
            quantize_int8_dynamic,
            sqnr_shortlist,
            to_uint8_input,
        )

        scheme = int8_scheme(fp32, cfg.target) if cfg.int8_scheme == "auto" else cfg.int8_scheme
        if scheme not in ("static", "dynamic"):
            raise ExportError(f"int8 scheme must be auto, static or dynamic, got {cfg.int8_scheme!r}")
        if scheme == "dynamic" and cfg.target == "tensorrt":
            raise ExportError("--target tensorrt needs the static QDQ scheme")

        calib_fit, _ = _fitted(calib_samples, spec, "calibration images")
        # Hold a label-free search split out of the calibration images: it steers the fallback without
        # touching validation, and is not used for the ranges (ranges fit their own images too well).
        n_search = min(cfg.search_images, max(0, len(calib_fit) - cfg.min_calib))
        rng = random.Random(cfg.seed)
        order = list(range(len(calib_fit)))
        rng.shuffle(order)
        search_fit = [calib_fit[i] for i in order[:n_search]]
        calib_crops = [calib_fit[i] for i in order[n_search:]] if n_search else calib_fit
        calib_t = [normalize(f, spec) for f in calib_crops]
        name = "int8-trt" if cfg.target == "tensorrt" else "int8"
        int8 = pix_dir / f"model.{name}.onnx"
        excluded: list[str] = []
        history = []
        if not search_fit:
            search_fit = calib_fit[: cfg.search_images]
        search_t = [normalize(f, spec) for f in search_fit[:8]]  # the SQNR shortlist's float inputs
        bias_fix: dict[str, float] = {}
        f_calib = model_logits(fp32, calib_t) if cfg.bias_correction else None

        formats = list(SAFE_WEIGHT_FORMATS) if cfg.int8_weights == "auto" else [cfg.int8_weights]
        fmt = formats.pop(0)

        def quant(ex: list[str], dst: Path = int8) -> None:
            nonlocal fmt
            if scheme == "dynamic":
                fmt, _ = quantize_safely(lambda w: quantize_int8_dynamic(fp32, dst, exclude=ex, weights=w), dst, fmt)
            else:
                fmt, _ = quantize_safely(lambda w: quantize_int8(
                    fp32, dst, calib_t, method=cfg.calib_method, symmetric=cfg.target == "tensorrt", exclude=ex,
                    op_types=cfg.quantize_op_types, weights=w), dst, fmt)
            if cfg.bias_correction:
                bias_fix[dst.name] = correct_output_bias(f_calib, dst, calib_t)

        f_ref: np.ndarray | None = None  # FP32 probabilities on the search split, computed on first need

        def search_distance(path: Path, q: QuantizedInput | None = None) -> float:
            """Mean |Δp| to FP32 on the label-free search split: the fallback search's measure of fidelity.
            Agreement on ~100 images moves in 1 % steps and saturates; this is a continuous, lower-variance
            surrogate for it. Lower is better."""
            nonlocal f_ref
            if f_ref is None:
                f_ref, _ = _ort_eval(fp32, search_fit, spec)
            return float(np.mean(np.abs(_ort_eval(path, search_fit, spec, q)[0] - f_ref)))

        now: float | None = None  # the current INT8 model's search_distance, measured on first need
        tried: list[dict[str, Any]] = []  # weight formats that missed the gate before the one searched below
        round_ = 0
        while True:
            how = "dynamic" if scheme == "dynamic" else f"static QDQ, {cfg.calib_method}"
            log_step(f"quantizing INT8 ({how}, {fmt} weights, {len(calib_t)} calibration images"
                     f"{', ' + str(len(excluded)) + ' nodes kept in float' if excluded else ''})")
            quant(excluded)
            e = check(name, [int8], "int8")
            entry = {"excluded": list(excluded), "weights": fmt, "output_bias_correction": bias_fix.get(int8.name),
                     "agreement": e.get("agreement"), "balanced_accuracy": e.get("balanced_accuracy"),
                     "passed": e["passed"]}
            if e["passed"] is False and formats and not excluded:  # another safe weight format first
                log_step(f"INT8 missed the gate with {fmt} weights ({'; '.join(e['reasons'])}); trying "
                         f"{formats[0]} weights: {WEIGHT_FORMATS[formats[0]]}")
                tried.append(entry)
                fmt, now = formats.pop(0), None
                continue
            history.append(entry)
            if e["passed"] is not False or round_ == cfg.fallback_rounds or scheme == "dynamic":
                break  # the SQNR search compares QDQ activations: static scheme only
            # Which single node, kept in float, best restores agreement with FP32 on *calibration* images
            # (label-free, so the validation set stays untouched for the final gate)?
            shortlist = sqnr_shortlist(fp32, int8, search_t, cfg.fallback_candidates, excluded,  # few images: all
                                       op_types=cfg.quantize_op_types)                        # activations kept
            log_step(f"INT8 missed the gate ({'; '.join(e['reasons'])}); trying {len(shortlist)} layers in float")
            if now is None:
                now = search_distance(int8)
            best: tuple[float, str] | None = None
            trial = pix_dir / "trial.int8.onnx"
            for node, _lost in shortlist:
                quant([*excluded, node], trial)
                err = search_distance(trial)
                if best is None or err < best[0]:
                    best = (err, node)
            trial.unlink(missing_ok=True)
            if best is None or best[0] >= now:
                log_step(f"no single node kept in float brings INT8 closer to FP32 on the search split "
                         f"(mean |Δp| {now:.4f}); stopping the search")
                break  # the gated file is untouched: trials were written beside it
            log_step(f"keeping {best[1]} in float (search-split mean |Δp| vs FP32 {best[0]:.4f})")
            now = best[0]  # next round's model is this trial's (quantization is deterministic)
            excluded.append(best[1])
            round_ += 1
        quantized = None
        if scheme == "static" and cfg.target != "tensorrt" and cfg.uint8_input and e["passed"] is not False:
            quantized = to_uint8_input(int8, int8)
            if quantized is not None:
                # The gate's verdict is re-earned by the file that ships, through the uint8 input path.
                log_step(f"INT8 takes uint8 NHWC input (scale {quantized.scale:.6g}, zero point "
                         f"{quantized.zero_point}); re-checking the gate on it")
                before = e
                e = check(name, [int8], "int8", quantized=quantized)
                e["float_input_agreement"] = before.get("agreement")
            else:
                log_step("INT8 graph does not start with a per-tensor uint8 QuantizeLinear: keeping float input")

        if quantized is not None and cfg.pixel_input and val_t:
            e, quantized = _pixel_input_candidate(
                fp32, int8, spec, calib_crops, e, quantized, check=lambda path, q: check(name, [path], "int8", quantized=q),
                quantize=lambda src, dst, calib, q: quantize_int8(src, dst, calib, method=cfg.calib_method,
                                                                  exclude=excluded, op_types=cfg.quantize_op_types,
                                                                  input_qparams=(q.scale, q.zero_point),
                                                                  weights=fmt),
                bias=(lambda dst, calib: correct_output_bias(f_calib, dst, calib)) if cfg.bias_correction else None,
                bias_fix=bias_fix, distance=search_distance)
            report["artifacts"][name] = e
        report["artifacts"][name]["kept_in_float"] = excluded
        report["artifacts"][name]["scheme"] = scheme
        report["artifacts"][name]["output_bias_correction"] = bias_fix.get(int8.name)
        report["artifacts"][name]["fallback_history"] = history
        report["artifacts"][name]["weights_tried"] = tried
        if e["passed"] is False:
            failures.append(f"{name}: {'; '.join(e['reasons'])}")
            int8.unlink()
        else:
            add(name, [int8], "int8", calibration={"scheme": scheme,
                                                   "method": cfg.calib_method if scheme == "static" else "dynamic",
                                                   "n_images": len(calib_t),
                                                   "op_types": list(DYNAMIC_OP_TYPES if scheme == "dynamic"
                                                                    else cfg.quantize_op_types or ["all"]),
                                                   "output_bias_correction": bias_fix.get(int8.name),
                                                   "symmetric": cfg.target == "tensorrt", "kept_in_float": excluded,
                                                   "weights": fmt, "weight_format": WEIGHT_FORMATS[fmt],
                                                   "int8_safety": e.get("int8_safety")},
                **({"input": quantized.to_options()} if quantized else {}))

    if cfg.trt:
        from .tensorrt_build import build_engine

        src = artifacts.get("int8-trt") or artifacts.get("fp32")
        if src is None:
            raise ExportError("a TensorRT engine needs an ONNX artifact that passed its gate")
        eng = pix_dir / "model.engine"
        shape = (1, 3, spec.height, spec.width)
        opts = build_engine(out / src.files["model"].path, eng, int8="int8-trt" in artifacts,
                            min_shape=shape, opt_shape=shape, max_shape=(8, 3, spec.height, spec.width))
        artifacts["tensorrt"] = Artifact(runtime="tensorrt", precision="int8" if opts["int8"] else "fp16",
                                         files={"engine": file_entry(out, eng.relative_to(out).as_posix())},
                                         options=opts)

    if "fp32" not in cfg.precisions:
        for f in fp32_files:
            if f.exists() and not any(a.files["model"].path == f.relative_to(out).as_posix() for a in artifacts.values()):
                f.unlink()
    if not artifacts:
        raise GateFailedError("no artifact passed its gate: " + "; ".join(failures), report)

    from .conformance import add_conformance

    golden_from = val_fit or (calib_fit if "int8" in cfg.precisions else [])
    for n, a in list(artifacts.items()):
        if a.runtime == "onnxruntime":
            log_step(f"golden outputs for {n} (aligngemini verify)")
            artifacts[n] = add_conformance(out, n, a, spec, golden_from)
    default = next((n for n in ("int8", "int8-trt", "fp32", "fp16") if n in artifacts), next(iter(artifacts)))
    card_rel = None
    if cfg.model_card:
        shutil.copyfile(cfg.model_card, out / "MODEL_CARD.md")
        card_rel = "MODEL_CARD.md"
    import onnxruntime
    import torch as _torch

    provenance = {"exporter": f"aligngemini-sdk {EXPORTER_VERSION}", "arch": cfg.arch,
                  "source_weights": os.path.basename(cfg.weights) if cfg.weights else None,
                  "source_sha256": _sha(cfg.weights), "parameters": n_params,
                  "torch": _torch.__version__, "onnxruntime": onnxruntime.__version__,
                  "opset": cfg.opset, **({"ladeda_preprocess": cfg.ladeda_preprocess} if cfg.arch == "ladeda" else {}),
                  **cfg.extra_provenance}
    pixel_spec = PixelBranchSpec(artifacts=artifacts, default_artifact=default, input=spec, threshold=cfg.threshold,
                                 validation=report, arch=cfg.arch)
    manifest = put_branch(out, "pixel", pixel_spec, name=cfg.name or f"{cfg.arch} pixel expert",
                          description=cfg.description, provenance=provenance, placeholder=cfg.placeholder,
                          model_card=card_rel)
    report["bundle_id"] = manifest.bundle_id
    report["bundle"] = os.fspath(out)
    print_gate_table(report)
    if failures:
        raise GateFailedError("accuracy gate failed: " + "; ".join(failures), report)
    return report


def _sha(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    from ..bundle import sha256_file

    return sha256_file(path)


def gate_markdown(report: dict[str, Any]) -> str:
    rows = []
    ref = report.get("reference")
    if ref:
        rows.append(["pytorch (reference)", "–", "–", "–", fmt(ref["balanced_accuracy"], True), fmt(ref["auc"]), "–", "–"])
    for name, e in report["artifacts"].items():
        status = {True: "✅ pass", False: "❎ fail", None: "– not gated"}[e.get("passed")]
        rows.append([name, f"{e['size_mb']:.2f}", fmt(e.get("max_abs_delta")), fmt(e.get("agreement"), True),
                     fmt(e.get("balanced_accuracy"), True), fmt(e.get("auc")),
                     fmt(e.get("latency_ms_p50")), status + (f" ({'; '.join(e['reasons'])})" if e.get("reasons") and
                                                            e.get("passed") is False else "")])
    return markdown_table(["artifact", "MB", "max|Δp|", "agreement", "bal. acc", "AUC", "ms p50 (b=1)", "gate"], rows)


def print_gate_table(report: dict[str, Any]) -> None:
    import sys

    sys.stderr.write(f"\nValidation gate on {report['n_val']} images (calibration: {report['n_calib']}):\n")
    sys.stderr.write(gate_markdown(report) + "\n")
