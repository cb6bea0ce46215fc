"""ONNX FP16 conversion and INT8 static QDQ quantization with real-image calibration.

Beats "calibrate on a handful of images and hope": we refuse fewer than ``min_calib`` images, calibrate
with the bundle's own preprocessing, and when the accuracy gate fails we locate the layers whose
quantization hurts most (ORT's ``qdq_loss_debug``: SQNR of every activation, float vs QDQ) and
re-quantize with them kept in float, reporting which.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ExportError

CALIB_METHODS = ("minmax", "entropy", "percentile")
#: Quantize the compute-heavy ops only. Quantizing everything (ORT's default) wraps Add/Softmax/Mul/pooling in
#: Q/DQ pairs: on a ViT that erased the INT8 speed-up and most of its accuracy; None = every op type.
DEFAULT_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul", "Gemm")


class _DropMessages:
    """A logging filter dropping records that contain a given text (ORT's per-tensor warning floods)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def filter(self, record: object) -> bool:
        return self.text not in str(getattr(record, "msg", ""))


class _Reader:
    """CalibrationDataReader over preprocessed tensors, one image per call (sizes may differ)."""

    def __init__(self, input_name: str, tensors: Sequence[np.ndarray]) -> None:
        self.input_name, self.tensors, self.i = input_name, tensors, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.tensors):
            return None
        t = self.tensors[self.i]
        self.i += 1
        return {self.input_name: t[None].astype(np.float32)}

    def rewind(self) -> None:
        self.i = 0

    def __iter__(self):  # qdq_loss_debug iterates instead of calling get_next
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


def common_size(tensors: Sequence[np.ndarray], side: int = 256) -> list[np.ndarray]:
    """Centre-crop (reflect-pad when small) CHW tensors to one size: histogram calibrators stack their
    samples, and convolutional activation statistics are local, so a crop is representative."""
    out = []
    for t in tensors:
        _, h, w = t.shape
        ph, pw = max(0, side - h), max(0, side - w)
        if ph or pw:
            t = np.pad(t, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="symmetric")
            h, w = t.shape[1:]
        top, left = (h - side) // 2, (w - side) // 2
        out.append(np.ascontiguousarray(t[:, top:top + side, left:left + side]))
    return out


def _chunk(n: int, preferred: int = 16) -> int:
    """A range-reduction chunk that does not divide ``n``: ORT (1.32) raises "No data is collected" when its
    last flush finds an empty buffer, i.e. when the image count is an exact multiple of the chunk."""
    for k in range(preferred, 1, -1):
        if n % k:
            return k
    return n + 1  # n <= 2: no chunking needed


def to_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """FP16 weights and compute with float32 I/O (so one preprocessing serves every precision)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(os.fspath(src))
    fp16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(fp16, os.fspath(dst))
    return Path(dst)


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], calib: Sequence[np.ndarray], *,
                  method: str = "minmax", symmetric: bool = False, exclude: Sequence[str] = (),
                  per_channel: bool = True, op_types: Sequence[str] | None = DEFAULT_OP_TYPES) -> Path:
    """Static INT8 QDQ: per-channel int8 weights; activations uint8 asymmetric, or int8 symmetric
    (zero points 0) when ``symmetric`` -- what TensorRT's explicit quantization requires."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIB_METHODS:
        raise ExportError(f"calibration method must be one of {CALIB_METHODS}")
    dst = Path(dst)
    pre = dst.with_suffix(".pre.onnx")
    try:
        quant_pre_process(os.fspath(src), os.fspath(pre), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantize the original if it fails
        pre = Path(src)
    input_name = onnx.load(os.fspath(pre), load_external_data=False).graph.input[0].name
    if method != "minmax" and len({t.shape for t in calib}) > 1:
        calib = common_size(calib)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "CalibMovingAverage": False,
             # ORT keeps every intermediate output of every calibration image until it computes ranges: for a
             # ViT that is ~200 MB per image. Reduce ranges every 16 images to keep memory flat.
             "CalibMaxIntermediateOutputs": _chunk(len(calib))}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    import logging

    root = logging.getLogger()
    quiet = _DropMessages("is out-of-range for weight")  # ORT warns once per LayerNorm weight, per call
    root.addFilter(quiet)
    try:
        quantize_static(os.fspath(pre), os.fspath(dst), _Reader(input_name, calib), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=cm, nodes_to_exclude=list(exclude),
                        op_types_to_quantize=list(op_types) if op_types else None, extra_options=extra)
    finally:
        root.removeFilter(quiet)
    if pre != Path(src):
        pre.unlink(missing_ok=True)
    return dst


def int8_scheme(model: str | os.PathLike[str], target: str = "cpu") -> str:
    """``"dynamic"`` for MatMul-dominated graphs (transformers) on CPU, ``"static"`` otherwise.

    Measured on this project's 2-core AVX-512 VNNI CPU with a DINOv2-small-sized expert at 336 px
    (benchmarks/pixel_int8_vs_fp32.py): static QDQ MatMuls ran at 0.97-1.07x FP32 whatever the weight
    granularity (ORT executes most of them as dequantize + float MatMul), while dynamic quantization
    (MatMulInteger with per-call activation ranges) on the fused graph ran ~1.7x faster. ONNX Runtime's own
    guidance is the same: dynamic for transformers, static for CNNs. TensorRT needs QDQ: always static.
    """
    import onnx

    if target == "tensorrt":
        return "static"
    graph = onnx.load(os.fspath(model), load_external_data=False).graph
    consts = {t.name for t in graph.initializer}
    weight_matmuls = sum(n.op_type in ("MatMul", "Gemm") and any(i in consts for i in n.input) for n in graph.node)
    convs = sum(n.op_type == "Conv" for n in graph.node)
    return "dynamic" if weight_matmuls > 2 * max(1, convs) else "static"


#: What dynamic INT8 quantizes: the weight MatMuls (and attention MatMuls) of a transformer graph.
DYNAMIC_OP_TYPES: tuple[str, ...] = ("MatMul",)


def fuse_transformer_graph(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """ONNX Runtime's transformer fusions (LayerNorm + residual -> SkipLayerNormalization, bias + GELU ->
    BiasGelu) on an exported ViT graph. Attention fusion stays off: the exporter's attention pattern is not
    ORT's, and a half-fused graph is worse than a plain one. The result uses ``com.microsoft`` contrib ops."""
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    opts = FusionOptions("vit")
    opts.enable_attention = False
    ort_log = logging.getLogger("onnxruntime.transformers")
    level = ort_log.level
    ort_log.setLevel(logging.ERROR)  # it logs every fusion pass at INFO/WARNING
    try:
        m = optimize_model(os.fspath(src), model_type="vit", num_heads=0, hidden_size=0,
                           optimization_options=opts, opt_level=0)
    finally:
        ort_log.setLevel(level)
    m.save_model_to_file(os.fspath(dst))
    return Path(dst)


def quantize_int8_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                          exclude: Sequence[str] = ()) -> Path:
    """Dynamic INT8 for transformer graphs: int8 weights (per tensor) and uint8 activations quantized per
    call (no calibration ranges to go stale), on the :func:`fuse_transformer_graph` graph so the float glue
    between the integer MatMuls is fused.

    The fused graph uses ``com.microsoft`` contrib ops: it is an ONNX Runtime artifact (TensorRT takes the
    static QDQ flavour). ``exclude`` names nodes of the *fused* graph to keep in float.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    fused = dst.with_suffix(".fused.onnx")
    try:
        base = fuse_transformer_graph(src, fused)
    except Exception:  # fusion is an optimisation; quantize the plain graph if it fails
        base = Path(src)
    quantize_dynamic(os.fspath(base), os.fspath(dst), weight_type=QuantType.QInt8, per_channel=False,
                     op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=list(exclude),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fused.unlink(missing_ok=True)
    return dst


def model_logits(path: str | os.PathLike[str], data: Sequence[np.ndarray]) -> np.ndarray:
    """Raw outputs of an ONNX model, one image at a time (sizes may differ), as (N, outputs) float64."""
    import onnxruntime as ort

    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([np.asarray(sess.run(None, {name: t[None].astype(np.float32)})[0], np.float64).reshape(1, -1)
                           for t in data])


def correct_output_bias(float_logits: np.ndarray, qdq_model: str | os.PathLike[str],
                        data: Sequence[np.ndarray]) -> float:
    """Output bias correction: add the mean logit shift (FP32 - INT8) on label-free calibration images to
    the INT8 model's output, in place. Returns the correction.

    uint8 rounding of activations that sit mostly near zero (ReLU outputs feeding a global mean pool) is
    biased, and the pooled bias moves every logit the same way; this removes that shift without touching
    the per-image variation (the standard bias-correction step of post-training quantization).
    ``float_logits`` are the FP32 model's outputs on ``data`` (:func:`model_logits`), computed once by the caller.
    """
    import onnx
    from onnx import helper, numpy_helper

    delta = float(np.mean(float_logits - model_logits(qdq_model, data)))
    if not np.isfinite(delta) or abs(delta) < 1e-6:
        return 0.0
    model = onnx.load(os.fspath(qdq_model))
    g = model.graph
    out = g.output[0].name
    pre = out + "_before_bias_correction"
    for node in g.node:
        node.output[:] = [pre if o == out else o for o in node.output]
        node.input[:] = [pre if i == out else i for i in node.input]
    const = out + "_bias_correction"
    g.initializer.append(numpy_helper.from_array(np.asarray([delta], np.float32), const))
    g.node.append(helper.make_node("Add", [pre, const], [out], name="output_bias_correction"))
    onnx.save(model, os.fspath(qdq_model))
    return delta


def sqnr_shortlist(float_model: str | os.PathLike[str], qdq_model: str | os.PathLike[str],
                   data: Sequence[np.ndarray], k: int, exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
    """Up to ``k`` float-model nodes that *add* the most quantization error, as (name, dB lost).

    ORT's ``qdq_loss_debug`` gives the SQNR of every activation (float vs QDQ model). Error compounds
    downstream, so a node is ranked by the SQNR it loses relative to its worst input, not by its own SQNR
    (which would always blame the last layers).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    graph = onnx.load(os.fspath(float_model), load_external_data=False).graph
    input_name = graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        fa, qa = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        modify_model_output_intermediate_tensors(os.fspath(float_model), fa)
        modify_model_output_intermediate_tensors(os.fspath(qdq_model), qa)
        f_acts = collect_activations(fa, _Reader(input_name, data))
        q_acts = collect_activations(qa, _Reader(input_name, data))
    errors = compute_activation_error(create_activation_matching(q_acts, f_acts))
    sqnr = {t: float(np.mean(e["xmodel_err"])) for t, e in errors.items() if "xmodel_err" in e}
    scored = []
    for node in graph.node:
        outs = [sqnr[o] for o in node.output if o in sqnr and np.isfinite(sqnr[o])]
        if not outs or node.name in exclude or not node.name:
            continue
        ins = [sqnr[i] for i in node.input if i in sqnr and np.isfinite(sqnr[i])]
        lost = (min(ins) if ins else 100.0) - min(outs)
        scored.append((node.name, lost))
    scored.sort(key=lambda x: -x[1])
    return scored[:k]
