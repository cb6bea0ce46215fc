"""Export a pixel-artifact expert to a verified bundle: ONNX FP32 / FP16 / INT8 (+ TensorRT engine),
each checked against the PyTorch reference by the validation gate before it is allowed into the bundle.

    aligngemini export pixel --arch ladeda --weights W.pth --calib DIR --val DIR --out BUNDLE

A pipeline of small stages over one :class:`ExportContext`: :func:`load_data` (calibration and validation crops),
the reference model, then one stage per precision (:func:`fp32_stage`, :func:`fp16_stage`,
:func:`~aligngemini_sdk.export.int8_export.int8_stage`, :func:`trt_stage`), each returning an
:class:`ArtifactResult` (its :class:`~aligngemini_sdk.export.gate.GateEntry` and, when it passed, the manifest
:class:`~aligngemini_sdk.manifest.Artifact`), and :func:`write_bundle`. Architectures come from the registry in
:mod:`aligngemini_sdk.export.archs` (one file per family).
"""

from __future__ import annotations

import contextlib
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

from aligngemini_sdk import __version__
from aligngemini_sdk.dataset import Sample, load_collection, split_by_hash
from aligngemini_sdk.decode_plan import branch_input
from aligngemini_sdk.errors import ExportError, GateFailedError, ImageError
from aligngemini_sdk.export.archs import arch_names, get_arch
from aligngemini_sdk.export.bundle_writer import file_entry, put_branch
from aligngemini_sdk.export.gate import GateEntry, GateMetrics, GateReport, GateThresholds, print_gate_table
from aligngemini_sdk.export.quantize import DEFAULT_OP_TYPES
from aligngemini_sdk.export.saturation import prove_file
from aligngemini_sdk.manifest import Artifact, InputSpec, PixelBranchSpec, SemanticBranchSpec
from aligngemini_sdk.preprocess import fit_to_spec, normalize
from aligngemini_sdk.progress import log_step, track
from aligngemini_sdk.quantized_input import QuantizedInput

EXPORTER_VERSION = __version__  # recorded in every bundle's provenance
#: fp16w: FP16 weights stored, FP32 compute (half the file, FP32 speed on CPUs without FP16 kernels)
PRECISIONS = ("fp32", "fp16", "fp16w", "int8")
__all__ = ["ArtifactResult", "ExportContext", "GateThresholds", "PixelExportConfig", "arch_names", "default_input",
           "export_onnx", "export_pixel", "kernels_vs_reference", "load_source"]


@dataclass
class PixelExportConfig:
    arch: str
    out: Path
    #: "pixel": the pixel-artifact expert; "semantic": a whole-image classifier as the semantic branch (the
    #: two-branch design without a VLM: ``input`` then says how the whole image is resized)
    branch: str = "pixel"
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
    """The input spec an architecture's family declares (:mod:`aligngemini_sdk.export.archs`)."""
    return get_arch(arch).default_input


def load_source(cfg: PixelExportConfig) -> Any:
    """The PyTorch reference model (eval mode) for ``cfg.arch``."""
    return get_arch(cfg.arch).load(cfg)


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
            out.append(np.ascontiguousarray(fit_to_spec(branch_input(s.path, spec), spec)))
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
    from aligngemini_sdk.runtimes.base import logits_to_probability
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel

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


def kernels_vs_reference(optimized: np.ndarray, reference: np.ndarray, threshold: float) -> dict[str, Any]:
    """How far this machine's optimized kernels are from the file's reference arithmetic (probabilities)."""
    from aligngemini_sdk.device import cpu_label

    d = np.abs(optimized - reference)
    return {"mean_abs_dp": float(d.mean()) if len(d) else 0.0, "max_abs_dp": float(d.max()) if len(d) else 0.0,
            "flips": int(np.sum((optimized > threshold) != (reference > threshold))), "cpu": cpu_label()}



# -- data ------------------------------------------------------------------------------------------------
@dataclass
class ExportData:
    """The images the gate judges on (validation crops, their tensors and labels) and the calibration samples."""

    calib: list[Sample]
    val_fit: list[np.ndarray]
    val_t: list[np.ndarray]
    labels: np.ndarray


def load_data(cfg: PixelExportConfig, spec: InputSpec) -> ExportData:
    calib: list[Sample] = load_collection(cfg.calib, cfg.exclude_sources) if cfg.calib else []
    val: list[Sample] = load_collection(cfg.val, cfg.exclude_sources) if cfg.val else []
    if cfg.calib and (not cfg.val or Path(cfg.val).resolve() == Path(cfg.calib).resolve()):
        val, calib = split_by_hash(calib, cfg.holdout)
        log_step(f"validation = {len(val)} images held out of --calib by hash ({cfg.holdout:.0%})")
    overlap = {s.path for s in calib} & {s.path for s in val}
    if overlap:
        log_step(f"warning: {len(overlap)} images are in both calibration and validation sets")
    if "int8" in cfg.precisions:
        if not calib:
            raise ExportError("INT8 needs --calib DIR (real/ and fake/ images)")
        if len(calib) < cfg.min_calib and not cfg.allow_small_calib:
            raise ExportError(f"only {len(calib)} calibration images; at least {cfg.min_calib} are needed "
                              "for a trustworthy INT8 calibration (--allow-small-calib to override)")
    calib = _stratified(calib, cfg.max_calib, cfg.seed)
    val = _stratified(val, cfg.max_val, cfg.seed + 1)
    val_fit, val_kept = _fitted(val, spec, "validation images")
    return ExportData(calib=calib, val_fit=val_fit, val_t=[normalize(f, spec) for f in val_fit],
                      labels=np.asarray([s.label for s in val_kept]))


# -- the gate --------------------------------------------------------------------------------------------
class Gate:
    """Judges one ONNX file against the PyTorch reference's probabilities on the validation crops."""

    def __init__(self, cfg: PixelExportConfig, spec: InputSpec, data: ExportData, ref: np.ndarray) -> None:
        self.cfg, self.spec, self.data, self.ref = cfg, spec, data, ref
        self.reference = GateMetrics.measure(ref, ref, data.labels, cfg.threshold) if data.val_t else None

    def judge(self, files: list[Path], precision: str, *, is_fp32: bool = False,
              quantized: QuantizedInput | None = None) -> GateEntry:
        entry = GateEntry(size_mb=round(sum(f.stat().st_size for f in files) / 1e6, 3))
        proof = prove_file(files[0]) if precision == "int8" else None
        if proof is not None:
            entry.int8_safety = proof.to_dict()
        if not self.data.val_t:
            bad = proof is not None and not proof.safe
            entry.passed, entry.reasons = (False, [proof.reason()]) if bad and proof else (
                None, ["no validation data: gate not run"])
            return entry
        # INT8 is judged on the file's reference arithmetic, which every CPU reproduces once no kernel can
        # saturate (the proof above); this machine's own kernels are measured against it and recorded
        probs, ms = _ort_eval(files[0], self.data.val_fit, self.spec, quantized)
        if proof is not None:
            gated, _ = _ort_eval(files[0], self.data.val_fit, self.spec, quantized, reference=True)
            entry.kernels_vs_reference = kernels_vs_reference(probs, gated, self.cfg.threshold)
            probs = gated
        entry.metrics = GateMetrics.measure(self.ref, probs, self.data.labels, self.cfg.threshold)
        entry.latency_ms_p50 = round(ms, 3)
        reasons = [proof.reason()] if proof is not None and not proof.safe else []
        entry.passed, entry.reasons = not (reasons := reasons + self._misses(entry.metrics, is_fp32)), reasons
        return entry

    def _misses(self, m: GateMetrics, is_fp32: bool) -> list[str]:
        g, reasons = self.cfg.gate, []
        if is_fp32 and m.max_abs_delta > g.fp32_max_delta:
            reasons.append(f"max|Δp| {m.max_abs_delta:.2e} > {g.fp32_max_delta:.0e}")
        if not is_fp32 and m.agreement < g.min_agreement:
            reasons.append(f"agreement {m.agreement:.2%} < {g.min_agreement:.0%}")
        ref_bacc = self.reference.balanced_accuracy if self.reference else None
        if (not is_fp32 and ref_bacc is not None and m.balanced_accuracy is not None
                and ref_bacc - m.balanced_accuracy > g.max_bacc_drop):
            reasons.append(f"balanced accuracy drop {100 * (ref_bacc - m.balanced_accuracy):.1f} pts "
                           f"> {100 * g.max_bacc_drop:.1f}")
        return reasons


# -- the pipeline ----------------------------------------------------------------------------------------
@dataclass
class ArtifactResult:
    """What one precision stage produced: its gate entry, and the manifest artifact when it may ship."""

    name: str
    entry: GateEntry
    artifact: Artifact | None = None


@dataclass
class ExportContext:
    """Everything the stages share, read-only to them except ``calib_fit`` (set by the INT8 stage)."""

    cfg: PixelExportConfig
    spec: InputSpec
    out: Path
    model: Any
    data: ExportData
    fp32_files: list[Path]
    gate: Gate
    calib_fit: list[np.ndarray] = field(default_factory=list)

    @property
    def pix_dir(self) -> Path:
        return self.out / self.cfg.branch

    def artifact(self, files: list[Path], precision: str, options: dict[str, Any] | None = None) -> Artifact:
        """An ONNX Runtime artifact of the bundle: the model file (and its external data) with checksums."""
        roles = {"model": files[0], **{f"external_data{i}": f for i, f in enumerate(files[1:])}}
        return Artifact(runtime="onnxruntime", precision=precision,
                        files={r: file_entry(self.out, f.relative_to(self.out).as_posix()) for r, f in roles.items()},
                        options=options or {})


def fp32_stage(ctx: ExportContext) -> ArtifactResult:
    """FP32 is always judged (it is what FP16 and INT8 are made from); it ships when asked for and it passed."""
    e = ctx.gate.judge(ctx.fp32_files, "fp32", is_fp32=True)
    ships = "fp32" in ctx.cfg.precisions and e.passed is not False
    return ArtifactResult("fp32", e, ctx.artifact(ctx.fp32_files, "fp32") if ships else None)


def fp16_stage(ctx: ExportContext, precision: str = "fp16") -> ArtifactResult:
    """``fp16``: FP16 weights and compute; ``fp16w``: FP16 weights stored, FP32 compute (quantize.to_fp16_weights)."""
    from aligngemini_sdk.export.quantize import to_fp16, to_fp16_weights

    log_step("converting to FP16" + (" storage (FP32 compute)" if precision == "fp16w" else ""))
    convert = to_fp16_weights if precision == "fp16w" else to_fp16
    path = convert(ctx.fp32_files[0], ctx.pix_dir / f"model.{precision}.onnx")
    e = ctx.gate.judge([path], precision)
    if e.passed is False:
        path.unlink()
        return ArtifactResult(precision, e)
    return ArtifactResult(precision, e, ctx.artifact([path], precision))


def trt_stage(ctx: ExportContext, artifacts: dict[str, Artifact]) -> Artifact:
    from aligngemini_sdk.export.tensorrt_build import build_engine

    src = artifacts.get("int8-trt") or artifacts.get("fp32")
    if src is None:
        raise ExportError("a TensorRT engine needs an ONNX artifact that passed its gate")
    eng, spec = ctx.pix_dir / "model.engine", ctx.spec
    shape = (1, 3, spec.height, spec.width)
    opts = build_engine(ctx.out / src.files["model"].path, eng, int8="int8-trt" in artifacts,
                        min_shape=shape, opt_shape=shape, max_shape=(8, 3, spec.height, spec.width))
    return Artifact(runtime="tensorrt", precision="int8" if opts["int8"] else "fp16",
                    files={"engine": file_entry(ctx.out, eng.relative_to(ctx.out).as_posix())}, options=opts)


def export_pixel(cfg: PixelExportConfig) -> GateReport:
    """Run the whole export; returns the gate report. Raises GateFailedError (after writing the bundle
    with the artifacts that passed) when an artifact misses its gate."""
    ctx = _begin(cfg)
    report = GateReport(n_val=len(ctx.data.val_t), n_calib=len(ctx.data.calib), threshold=cfg.threshold,
                        gate=cfg.gate, reference=ctx.gate.reference)
    artifacts: dict[str, Artifact] = {}
    for result in _precision_stages(ctx):
        report.artifacts[result.name] = result.entry
        if result.artifact is not None:
            artifacts[result.name] = result.artifact
    if cfg.trt:
        artifacts["tensorrt"] = trt_stage(ctx, artifacts)
    _drop_unshipped_fp32(ctx, artifacts)
    if not artifacts:
        raise GateFailedError("no artifact passed its gate: " + "; ".join(report.failures), report)
    write_bundle(ctx, artifacts, report)
    print_gate_table(report)
    if report.failures:
        raise GateFailedError("accuracy gate failed: " + "; ".join(report.failures), report)
    return report


def _begin(cfg: PixelExportConfig) -> ExportContext:
    import torch

    torch.manual_seed(cfg.seed)
    if cfg.branch not in ("pixel", "semantic"):
        raise ExportError(f"branch must be pixel or semantic, got {cfg.branch!r}")
    spec = cfg.input or default_input(cfg.arch)
    out = Path(cfg.out)
    (out / cfg.branch).mkdir(parents=True, exist_ok=True)
    log_step(f"loading {cfg.arch} source model")
    model = load_source(cfg)
    data = load_data(cfg, spec)
    log_step("exporting ONNX FP32")
    fp32_files = export_onnx(model, out / cfg.branch / "model.fp32.onnx", spec, cfg.opset)
    ref = _torch_probs(model, data.val_t) if data.val_t else np.zeros(0)
    return ExportContext(cfg=cfg, spec=spec, out=out, model=model, data=data, fp32_files=fp32_files,
                         gate=Gate(cfg, spec, data, ref))


def _precision_stages(ctx: ExportContext) -> Any:
    from aligngemini_sdk.export.int8_export import int8_stage

    unknown = set(ctx.cfg.precisions) - set(PRECISIONS)
    if unknown:
        raise ExportError(f"unknown precisions {sorted(unknown)}; known: {', '.join(PRECISIONS)}")
    yield fp32_stage(ctx)
    for half in ("fp16", "fp16w"):
        if half in ctx.cfg.precisions:
            yield fp16_stage(ctx, half)
    if "int8" in ctx.cfg.precisions:
        yield int8_stage(ctx)


def _drop_unshipped_fp32(ctx: ExportContext, artifacts: dict[str, Artifact]) -> None:
    if "fp32" in ctx.cfg.precisions:
        return
    shipped = {a.files["model"].path for a in artifacts.values() if "model" in a.files}
    for f in ctx.fp32_files:
        if f.exists() and f.relative_to(ctx.out).as_posix() not in shipped:
            f.unlink()


def write_bundle(ctx: ExportContext, artifacts: dict[str, Artifact], report: GateReport) -> None:
    """Golden outputs for every ONNX artifact, the model card, provenance, and the manifest's pixel branch."""
    from aligngemini_sdk.export.conformance import add_conformance

    cfg, out = ctx.cfg, ctx.out
    golden_from = ctx.data.val_fit or (ctx.calib_fit if "int8" in cfg.precisions else [])
    for n, a in list(artifacts.items()):
        if a.runtime == "onnxruntime":
            log_step(f"golden outputs for {n} (aligngemini verify)")
            artifacts[n] = add_conformance(out, n, a, ctx.spec, golden_from)
    default = next((n for n in ("int8", "int8-trt", "fp32", "fp16w", "fp16") if n in artifacts), next(iter(artifacts)))
    card_rel = None
    if cfg.model_card:
        shutil.copyfile(cfg.model_card, out / "MODEL_CARD.md")
        card_rel = "MODEL_CARD.md"
    spec: PixelBranchSpec | SemanticBranchSpec
    if cfg.branch == "semantic":
        spec = SemanticBranchSpec(artifacts=artifacts, default_artifact=default, input=ctx.spec,
                                  threshold=cfg.threshold, validation=report.to_dict(), arch=cfg.arch)
    else:
        spec = PixelBranchSpec(artifacts=artifacts, default_artifact=default, input=ctx.spec,
                               threshold=cfg.threshold, validation=report.to_dict(), arch=cfg.arch)
    name = cfg.name or (f"{cfg.arch} pixel expert" if cfg.branch == "pixel" else None)
    manifest = put_branch(out, cfg.branch, spec, name=name, description=cfg.description or None,
                          provenance=_provenance(ctx), placeholder=cfg.placeholder, model_card=card_rel)
    report.bundle_id, report.bundle = manifest.bundle_id, os.fspath(out)


def _provenance(ctx: ExportContext) -> dict[str, Any]:
    import onnxruntime
    import torch

    cfg, model = ctx.cfg, ctx.model
    n_params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
    return {"exporter": f"aligngemini-sdk {EXPORTER_VERSION}", "arch": cfg.arch,
            "source_weights": os.path.basename(cfg.weights) if cfg.weights else None,
            "source_sha256": _sha(cfg.weights), "parameters": n_params,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "opset": cfg.opset, **get_arch(cfg.arch).provenance(cfg), **cfg.extra_provenance}


def _sha(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    from aligngemini_sdk.bundle import sha256_file

    return sha256_file(path)
