"""The INT8 stage of the pixel export: quantize the FP32 file, search for the few nodes to keep in float when the
gate is missed, then give the shipped file the cheapest input that keeps its verdict (the quantized uint8 input,
then the crop's own bytes). Every file it writes is judged by the same :class:`~aligngemini_sdk.export.pixel.Gate`
and carries a per-node proof that no CPU kernel can saturate (:mod:`aligngemini_sdk.export.saturation`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.gate import FallbackRound, GateEntry, Int8Search
from aligngemini_sdk.export.pixel import ArtifactResult, ExportContext, _fitted, _ort_eval
from aligngemini_sdk.export.quantize import (
    DYNAMIC_OP_TYPES,
    correct_output_bias,
    int8_scheme,
    model_logits,
    quantize_int8,
    quantize_int8_dynamic,
    sqnr_shortlist,
    to_uint8_input,
)
from aligngemini_sdk.export.saturation import SAFE_WEIGHT_FORMATS, WEIGHT_FORMATS, SaturationProof, prove_file
from aligngemini_sdk.preprocess import normalize
from aligngemini_sdk.progress import log_step
from aligngemini_sdk.quantized_input import InputQuantizer, QuantizedInput

__all__ = ["int8_stage", "quantize_safely"]


def quantize_safely(quantize: Callable[[str], Any], dst: Path, weights: str) -> tuple[str, SaturationProof]:
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


@dataclass
class CalibSplit:
    """Calibration crops (the ranges) and a label-free search split held out of them: it steers the fallback
    without touching validation, and is not used for the ranges (ranges fit their own images too well)."""

    crops: list[np.ndarray]
    tensors: list[np.ndarray]
    search_fit: list[np.ndarray]
    search_t: list[np.ndarray]  # the SQNR shortlist's float inputs (a few images: all activations kept)


def calib_split(ctx: ExportContext) -> CalibSplit:
    cfg, spec = ctx.cfg, ctx.spec
    ctx.calib_fit, _ = _fitted(ctx.data.calib, spec, "calibration images")
    calib_fit = ctx.calib_fit
    n_search = min(cfg.search_images, max(0, len(calib_fit) - cfg.min_calib))
    order = list(range(len(calib_fit)))
    random.Random(cfg.seed).shuffle(order)
    search_fit = [calib_fit[i] for i in order[:n_search]]
    crops = [calib_fit[i] for i in order[n_search:]] if n_search else calib_fit
    if not search_fit:
        search_fit = calib_fit[: cfg.search_images]
    return CalibSplit(crops=crops, tensors=[normalize(f, spec) for f in crops], search_fit=search_fit,
                      search_t=[normalize(f, spec) for f in search_fit[:8]])


class Int8Writer:
    """Writes INT8 files from the FP32 one with a fixed calibration; owns the weight format in force (``auto``:
    s7, then u8 when s7 misses the gate) and the output-bias correction each file received."""

    def __init__(self, ctx: ExportContext, scheme: str, split: CalibSplit) -> None:
        cfg = ctx.cfg
        self.ctx, self.scheme, self.split = ctx, scheme, split
        self.formats = list(SAFE_WEIGHT_FORMATS) if cfg.int8_weights == "auto" else [cfg.int8_weights]
        self.fmt = self.formats.pop(0)
        self.bias_fix: dict[str, float] = {}
        self.f_calib = model_logits(ctx.fp32_files[0], split.tensors) if cfg.bias_correction else None

    def next_format(self) -> bool:
        """Switch to the next safe weight format, if one is left."""
        if not self.formats:
            return False
        self.fmt = self.formats.pop(0)
        return True

    def write(self, excluded: list[str], dst: Path) -> None:
        cfg, fp32 = self.ctx.cfg, self.ctx.fp32_files[0]
        if self.scheme == "dynamic":
            self.fmt, _ = quantize_safely(lambda w: quantize_int8_dynamic(fp32, dst, exclude=excluded, weights=w),
                                          dst, self.fmt)
        else:
            self.fmt, _ = quantize_safely(lambda w: quantize_int8(
                fp32, dst, self.split.tensors, method=cfg.calib_method, symmetric=cfg.target == "tensorrt",
                exclude=excluded, op_types=cfg.quantize_op_types, weights=w), dst, self.fmt)
        self.correct_bias(dst, self.split.tensors)

    def write_pixel_input(self, src: Path, dst: Path, calib: list[np.ndarray], q: QuantizedInput,
                          excluded: list[str]) -> None:
        cfg = self.ctx.cfg
        quantize_int8(src, dst, calib, method=cfg.calib_method, exclude=excluded, op_types=cfg.quantize_op_types,
                      input_qparams=(q.scale, q.zero_point), weights=self.fmt)
        self.correct_bias(dst, calib)

    def correct_bias(self, dst: Path, calib: list[np.ndarray]) -> None:
        if self.f_calib is not None:
            self.bias_fix[dst.name] = correct_output_bias(self.f_calib, dst, calib)


class SearchDistance:
    """Mean |Δp| to FP32 on the label-free search split: the fallback search's measure of fidelity. Agreement on
    ~100 images moves in 1 % steps and saturates; this is a continuous, lower-variance surrogate. Lower is
    better. FP32's own probabilities are computed on first need."""

    def __init__(self, ctx: ExportContext, search_fit: list[np.ndarray]) -> None:
        self.ctx, self.search_fit = ctx, search_fit
        self._f_ref: np.ndarray | None = None

    def __call__(self, path: Path, q: QuantizedInput | None = None) -> float:
        if self._f_ref is None:
            self._f_ref, _ = _ort_eval(self.ctx.fp32_files[0], self.search_fit, self.ctx.spec)
        return float(np.mean(np.abs(_ort_eval(path, self.search_fit, self.ctx.spec, q)[0] - self._f_ref)))


@dataclass
class SearchOutcome:
    entry: GateEntry
    excluded: list[str]
    history: list[FallbackRound]
    tried: list[FallbackRound]  # weight formats that missed the gate before the one searched


def int8_stage(ctx: ExportContext) -> ArtifactResult:
    cfg = ctx.cfg
    scheme = _scheme(ctx)
    split = calib_split(ctx)
    name = "int8-trt" if cfg.target == "tensorrt" else "int8"
    int8 = ctx.pix_dir / f"model.{name}.onnx"
    writer = Int8Writer(ctx, scheme, split)
    distance = SearchDistance(ctx, split.search_fit)
    found = search(ctx, writer, distance, int8)
    e, quantized = input_form(ctx, writer, distance, found, int8)
    e.int8 = Int8Search(scheme=scheme, kept_in_float=found.excluded, output_bias_correction=writer.bias_fix.get(int8.name),
                        fallback_history=found.history, weights_tried=found.tried)
    if e.passed is False:
        int8.unlink()
        return ArtifactResult(name, e)
    calibration = {"scheme": scheme, "method": cfg.calib_method if scheme == "static" else "dynamic",
                   "n_images": len(split.tensors),
                   "op_types": list(DYNAMIC_OP_TYPES if scheme == "dynamic" else cfg.quantize_op_types or ["all"]),
                   "output_bias_correction": writer.bias_fix.get(int8.name), "symmetric": cfg.target == "tensorrt",
                   "kept_in_float": found.excluded, "weights": writer.fmt, "weight_format": WEIGHT_FORMATS[writer.fmt],
                   "int8_safety": e.int8_safety}
    options = {"calibration": calibration, **({"input": quantized.to_options()} if quantized else {})}
    return ArtifactResult(name, e, ctx.artifact([int8], "int8", options))


def _scheme(ctx: ExportContext) -> str:
    cfg = ctx.cfg
    scheme = int8_scheme(ctx.fp32_files[0], cfg.target) if cfg.int8_scheme == "auto" else cfg.int8_scheme
    if scheme not in ("static", "dynamic"):
        raise ExportError(f"int8 scheme must be auto, static or dynamic, got {cfg.int8_scheme!r}")
    if scheme == "dynamic" and cfg.target == "tensorrt":
        raise ExportError("--target tensorrt needs the static QDQ scheme")
    return scheme


def search(ctx: ExportContext, writer: Int8Writer, distance: SearchDistance, int8: Path) -> SearchOutcome:
    """Quantize; on a miss, try the next safe weight format, then keep single nodes in float one round at a time
    (the one that brings INT8 closest to FP32 on the search split) until the gate passes or nothing helps."""
    cfg, found = ctx.cfg, SearchOutcome(entry=GateEntry(size_mb=0.0), excluded=[], history=[], tried=[])
    now: float | None = None  # the current INT8 model's distance, measured on first need
    for _ in range(cfg.fallback_rounds + len(writer.formats) + 1):
        how = "dynamic" if writer.scheme == "dynamic" else f"static QDQ, {cfg.calib_method}"
        n_float = f", {len(found.excluded)} nodes kept in float" if found.excluded else ""
        log_step(f"quantizing INT8 ({how}, {writer.fmt} weights, {len(writer.split.tensors)} calibration images"
                 f"{n_float})")
        writer.write(found.excluded, int8)
        e = found.entry = ctx.gate.judge([int8], "int8")
        record = FallbackRound(excluded=list(found.excluded), weights=writer.fmt,
                               output_bias_correction=writer.bias_fix.get(int8.name), agreement=e.agreement,
                               balanced_accuracy=e.balanced_accuracy, passed=e.passed)
        if e.passed is False and writer.formats and not found.excluded:  # another safe weight format first
            log_step(f"INT8 missed the gate with {writer.fmt} weights ({'; '.join(e.reasons)}); trying "
                     f"{writer.formats[0]} weights: {WEIGHT_FORMATS[writer.formats[0]]}")
            found.tried.append(record)
            writer.next_format()
            now = None
            continue
        found.history.append(record)
        if e.passed is not False or len(found.excluded) == cfg.fallback_rounds or writer.scheme == "dynamic":
            break  # the SQNR search compares QDQ activations: static scheme only
        log_step(f"INT8 missed the gate ({'; '.join(e.reasons)}); trying layers in float")
        now = distance(int8) if now is None else now
        best = _best_single_node(ctx, writer, distance, int8, found.excluded)
        if best is None or best[0] >= now:
            log_step(f"no single node kept in float brings INT8 closer to FP32 on the search split "
                     f"(mean |Δp| {now:.4f}); stopping the search")
            break  # the gated file is untouched: trials were written beside it
        log_step(f"keeping {best[1]} in float (search-split mean |Δp| vs FP32 {best[0]:.4f})")
        now = best[0]  # next round's model is this trial's (quantization is deterministic)
        found.excluded.append(best[1])
    return found


def _best_single_node(ctx: ExportContext, writer: Int8Writer, distance: SearchDistance, int8: Path,
                      excluded: list[str]) -> tuple[float, str] | None:
    """Which single node, kept in float, best restores agreement with FP32 on *calibration* images (label-free,
    so the validation set stays untouched for the final gate)?"""
    shortlist = sqnr_shortlist(ctx.fp32_files[0], int8, writer.split.search_t, ctx.cfg.fallback_candidates, excluded,
                               op_types=ctx.cfg.quantize_op_types)
    log_step(f"{len(shortlist)} layers shortlisted")
    best: tuple[float, str] | None = None
    trial = ctx.pix_dir / "trial.int8.onnx"
    for node, _lost in shortlist:
        writer.write([*excluded, node], trial)
        err = distance(trial)
        if best is None or err < best[0]:
            best = (err, node)
    trial.unlink(missing_ok=True)
    return best


def input_form(ctx: ExportContext, writer: Int8Writer, distance: SearchDistance, found: SearchOutcome,
               int8: Path) -> tuple[GateEntry, QuantizedInput | None]:
    """The cheapest input the gated file can take with the same verdict: the quantized uint8 NHWC input the SDK
    computes exactly from the crop, then (``pixel_input``) the crop's own bytes. Each re-earns the gate."""
    cfg, e = ctx.cfg, found.entry
    if not (writer.scheme == "static" and cfg.target != "tensorrt" and cfg.uint8_input and e.passed is not False):
        return e, None
    quantized = to_uint8_input(int8, int8)
    if quantized is None:
        log_step("INT8 graph does not start with a per-tensor uint8 QuantizeLinear: keeping float input")
        return e, None
    log_step(f"INT8 takes uint8 NHWC input (scale {quantized.scale:.6g}, zero point {quantized.zero_point}); "
             "re-checking the gate on it")
    before, e = e, ctx.gate.judge([int8], "int8", quantized=quantized)
    e.float_input_agreement = before.agreement
    if cfg.pixel_input and ctx.data.val_t:
        return pixel_input_candidate(ctx, writer, distance, found.excluded, e, quantized, int8)
    return e, quantized


def pixel_input_candidate(ctx: ExportContext, writer: Int8Writer, distance: SearchDistance, excluded: list[str],
                          entry: GateEntry, quantized: QuantizedInput, int8: Path) -> tuple[GateEntry, QuantizedInput]:
    """One more INT8 candidate after the quantized-input file passed: the same quantization (same calibration
    images, same nodes kept in float, same bias correction) of a graph that reads the crop's bytes
    (:func:`~aligngemini_sdk.export.quantize.fold_input_normalization`). It replaces ``int8`` only if it passes the
    same gate *and* is no further from FP32 on the label-free search split than ``int8`` -- a faster input must
    not cost fidelity. Returns the gate entry and the input description of the file that ships."""
    from aligngemini_sdk.export.quantize import fold_input_normalization

    folded, cand = int8.with_name("folded.fp32.onnx"), int8.with_name("pixels." + int8.name)
    try:
        pixels = fold_input_normalization(ctx.fp32_files[0], folded, ctx.spec)
        if pixels is None:
            log_step("first node is not a plain Conv on the input: keeping the quantized input")
            return entry, quantized
        log_step(f"folding mean/std into the first Conv (input = RGB pixel - {pixels.zero_point}, border "
                 f"{pixels.pad} of RGB {pixels.fill}); quantizing and gating it")
        canvas, z = InputQuantizer(ctx.spec, pixels), np.float32(pixels.zero_point)
        calib_u = [canvas(c).transpose(2, 0, 1).astype(np.float32) - z for c in writer.split.crops]
        writer.write_pixel_input(folded, cand, calib_u, pixels, excluded)
        got = to_uint8_input(cand, cand)
        if got is None or (got.scale, got.zero_point) != (pixels.scale, pixels.zero_point):
            log_step(f"pixel-input graph did not quantize its input as (1, {pixels.zero_point}): keeping the "
                     "quantized input")
            return entry, quantized
        return _judge_pixel_input(ctx, writer, distance, entry, quantized, int8, cand, pixels)
    finally:
        folded.unlink(missing_ok=True)
        cand.unlink(missing_ok=True)


def _judge_pixel_input(ctx: ExportContext, writer: Int8Writer, distance: SearchDistance, entry: GateEntry,
                       quantized: QuantizedInput, int8: Path, cand: Path,
                       pixels: QuantizedInput) -> tuple[GateEntry, QuantizedInput]:
    near = {"quantized": distance(int8, quantized), "pixels": distance(cand, pixels)}
    e = ctx.gate.judge([cand], "int8", quantized=pixels)
    e.quantized_input_agreement, e.float_input_agreement = entry.agreement, entry.float_input_agreement
    e.search_mean_abs_dp = near
    if near["pixels"] > near["quantized"]:
        e.passed, e.reasons = False, [f"search-split mean |Δp| to FP32 {near['pixels']:.4f} > "
                                      f"{near['quantized']:.4f} with the quantized input"]
    if not e.passed:
        log_step(f"pixel input not shipped ({'; '.join(e.reasons)}): keeping the quantized input")
        entry.pixel_input = {"rejected": e.reasons, "agreement": e.agreement, "search_mean_abs_dp": near}
        return entry, quantized
    cand.replace(int8)
    if cand.name in writer.bias_fix:
        writer.bias_fix[int8.name] = writer.bias_fix.pop(cand.name)
    log_step(f"INT8 takes the crop's RGB bytes (agreement {e.agreement or 0:.2%}, search-split mean |Δp| "
             f"{near['pixels']:.4f}; quantized input {entry.agreement or 0:.2%}, {near['quantized']:.4f})")
    return e, pixels
