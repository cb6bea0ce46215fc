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
from typing import Any

import numpy as np

from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.saturation import WEIGHT_FORMATS
from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.quantized_input import QuantizedInput

CALIB_METHODS = ("minmax", "entropy", "percentile")
#: Activations ORT's QDQ quantizer removes after a quantized op (their range becomes that op's output range).
FOLDED_ACTIVATIONS: tuple[str, ...] = ("Relu", "Clip")
#: Quantize the compute-heavy ops, plus the activations ORT folds into them. Quantizing everything (ORT's
#: default) wraps Add/Softmax/Mul/pooling in Q/DQ pairs: on a ViT that erased the INT8 speed-up and most of its
#: accuracy. Relu and Clip (ReLU6) must be listed, though: ORT then removes them and gives the Conv output the
#: activation's range ([0, 6] for ReLU6) instead of the raw pre-activation range. Left out, the Conv output is
#: rounded on a grid many times coarser, then clipped: on the compact default expert that alone cut FP32/INT8
#: decision agreement from 98.6 % to 90.5 % and made INT8 slower than FP32 (3.8 vs 2.9 ms; 1.9 ms with them).
#: None = every op type.
DEFAULT_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul", "Gemm", *FOLDED_ACTIVATIONS)


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


def to_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """FP16 weights and compute with float32 I/O (so one preprocessing serves every precision)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(os.fspath(src))
    fp16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(fp16, os.fspath(dst))
    return Path(dst)


def to_fp16_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str], min_elements: int = 16) -> Path:
    """FP16 *storage*, FP32 compute: every float weight of ``min_elements`` or more is stored as float16 behind a
    ``Cast`` to float32, which ONNX Runtime's constant folding evaluates once when the session loads. Half the file of
    FP32, FP32 kernels at run time. Why: on x86 CPUs ONNX Runtime has few FP16 kernels and wraps the FP16 graph's
    operators in casts; measured on an AMD EPYC (AVX2), EfficientNet-Lite0 at 224: FP32 6.3 ms, FP16 8.0 ms, FP16
    weights with FP32 compute 6.3 ms, all at 6.8 MB but FP32's 13.5."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(os.fspath(src))
    g = model.graph
    casts, halves = [], []
    for init in list(g.initializer):
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
            halves.append(half)
            g.initializer.remove(init)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "_to_fp32"))
    g.initializer.extend(halves)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(dst))
    return Path(dst)


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], calib: Sequence[np.ndarray], *,
                  method: str = "minmax", symmetric: bool = False, exclude: Sequence[str] = (),
                  per_channel: bool = True, op_types: Sequence[str] | None = DEFAULT_OP_TYPES,
                  input_qparams: tuple[float, int] | None = None, weights: str = "s7") -> Path:
    """Static INT8 QDQ: per-channel int8 weights; activations uint8 asymmetric, or int8 symmetric
    (zero points 0) when ``symmetric`` -- what TensorRT's explicit quantization requires.
    ``weights``: a :data:`~.saturation.WEIGHT_FORMATS` key. "s7" (the default: int8 in [-64, 64]) and "u8"
    (uint8, zero point 128) no CPU kernel can saturate (:mod:`.saturation`); "s8" ([-127, 127]) is exact only on
    VNNI/AMX/dot-product kernels.
    ``input_qparams`` = (scale, zero point) fixes the graph input's quantization instead of calibrating it
    (a folded pixel input: scale 1, so every byte is represented exactly)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIB_METHODS:
        raise ExportError(f"calibration method must be one of {CALIB_METHODS}")
    weight_type, reduce_range = _weight_type(weights)
    dst = Path(dst)
    pre = _preprocessed(Path(src), dst.with_suffix(".pre.onnx"))
    input_name = onnx.load(os.fspath(pre), load_external_data=False).graph.input[0].name
    if method != "minmax" and len({t.shape for t in calib}) > 1:
        calib = common_size(calib)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra = _calibration_options(method, symmetric, input_name, input_qparams)
    import logging

    root = logging.getLogger()
    quiet = _DropMessages("is out-of-range for weight")  # ORT warns once per LayerNorm weight, per call
    root.addFilter(quiet)
    try:
        quantize_static(os.fspath(pre), os.fspath(dst), _Reader(input_name, calib), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        weight_type=weight_type, calibrate_method=cm, nodes_to_exclude=list(exclude),
                        reduce_range=reduce_range,
                        op_types_to_quantize=list(op_types) if op_types else None, extra_options=extra)
    finally:
        root.removeFilter(quiet)
    if pre != Path(src):
        pre.unlink(missing_ok=True)
    return dst


def _preprocessed(src: Path, pre: Path) -> Path:
    """ONNX Runtime's quantization pre-processing of ``src`` into ``pre``; ``src`` itself if it fails (it is an
    optimisation)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(os.fspath(src), os.fspath(pre), skip_symbolic_shape=True)
    except Exception:
        return src
    return pre


def _calibration_options(method: str, symmetric: bool, input_name: str,
                         input_qparams: tuple[float, int] | None) -> dict[str, Any]:
    """``quantize_static``'s extra options. No "CalibMaxIntermediateOutputs": ORT 1.32's MinMax calibrator drops
    every full chunk without reducing it (onnxruntime#18893; the fix, PR #20226, was never merged), so ranges came
    from the last few images only. MinMax keeps just per-tensor ReduceMin/ReduceMax values per image, so one pass
    is cheap anyway."""
    extra: dict[str, Any] = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "CalibMovingAverage": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    if input_qparams is not None:
        scale, zp = input_qparams
        extra["TensorQuantOverrides"] = {input_name: [{"scale": np.array(scale, np.float32),
                                                       "zero_point": np.array(zp, np.uint8)}]}
    return extra


def int8_scheme(model: str | os.PathLike[str], target: str = "cpu") -> str:
    """``"dynamic"`` for MatMul-dominated graphs (transformers) on CPU, ``"static"`` otherwise.

    Measured on this project's 2-core AVX-512 VNNI CPU with a DINOv2-small-sized expert at 336 px
    (benchmarks/pixel_int8_vs_fp32.py): static QDQ MatMuls ran at 0.97-1.07x FP32 whatever the weight
    granularity (ORT executes most of them as dequantize + float MatMul), while dynamic quantization
    (MatMulInteger with per-call activation ranges) ran ~1.7x faster. ONNX Runtime's own
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


#: What dynamic INT8 quantizes: the weight MatMuls of a transformer graph.
DYNAMIC_OP_TYPES: tuple[str, ...] = ("MatMul",)


def _weight_type(weights: str) -> tuple[object, bool]:
    """(ORT QuantType, reduce_range) of a weight format."""
    from onnxruntime.quantization import QuantType

    if weights not in WEIGHT_FORMATS:
        raise ExportError(f"INT8 weight format must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    return (QuantType.QUInt8 if weights == "u8" else QuantType.QInt8), weights == "s7"


def quantize_int8_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                          exclude: Sequence[str] = (), weights: str = "s7", attention: bool = False) -> Path:
    """Dynamic INT8 for transformer graphs: int8 weights (per tensor) and uint8 activations quantized per
    call (no calibration ranges to go stale), on the plain exported graph.

    Not on ONNX Runtime's offline transformer fusions: profiled on the DINOv2-small-sized expert at 336 px,
    its SkipLayerNormalization ran 2.4x slower than the LayerNorm + Add it replaced (19 vs 8 ms per call), and
    a fused MultiHeadAttention (traced as ORT's contrib op) took 39 ms against ~30 ms for the unfused Q K^T,
    softmax and A V; the session's own runtime fusions (FusedMatMul, BiasGelu, LayerNorm) still apply. The
    plain graph ran 1.67-1.77x FP32, the fused one 1.45-1.50x, measured interleaved in one run.
    ``exclude`` names nodes to keep in float; ``weights`` as in :func:`quantize_int8` ("s7": no kernel saturates).
    ``attention`` also quantizes the products of two activations (attention's Q K^T and A V), both operands uint8
    per call (u8 x u8: no kernel saturates). Measured on a 2-core AVX-512 VNNI + AMX Xeon, DINOv2-small-sized at
    336 px: it made the model slower (67 vs 61 ms; benchmarks/pixel_int8_vs_fp32.py), since VNNI multiplies
    u8 x s8 only and the per-call quantization of the 6 x 577 x 577 attention map costs more than it saves; so it
    is off, kept for CPUs and runtimes with fast u8 x u8 products (ARM UDOT).
    """
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    weight_type, reduce_range = _weight_type(weights)
    quantize_dynamic(os.fspath(src), os.fspath(dst), weight_type=weight_type, per_channel=False,
                     reduce_range=reduce_range,
                     op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=list(exclude),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": not attention})
    return Path(dst)


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


#: SQNR cap: identical tensors have an infinite SQNR; the float input of both models is exact.
MAX_SQNR_DB = 100.0


def sqnr_shortlist(float_model: str | os.PathLike[str], qdq_model: str | os.PathLike[str],
                   data: Sequence[np.ndarray], k: int, exclude: Sequence[str] = (),
                   op_types: Sequence[str] | None = DEFAULT_OP_TYPES) -> list[tuple[str, float]]:
    """Up to ``k`` float-model nodes that *add* the most quantization error, as (name, noise added).

    ORT's ``qdq_loss_debug`` collects every activation of both models; the SQNR of each (float vs QDQ) gives
    a noise-to-signal ratio. Error compounds downstream, so a node is ranked by the relative noise power it
    adds over its worst input, not by its own SQNR (which would always blame the last layers).

    Candidates are the nodes the quantizer quantizes (``op_types``, as passed to :func:`quantize_int8`; None:
    any node reading an activation): keeping anything else "in float" changes nothing, and on the default
    expert the search once spent three rounds keeping a Clip's Constant bounds in float.
    """
    import onnx

    graph = onnx.load(os.fspath(float_model), load_external_data=False).graph
    sqnr = _activation_sqnr(float_model, qdq_model, data, graph.input[0].name)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def in_sqnr(t: str, depth: int = 0) -> float | None:
        """SQNR reaching tensor ``t``; for a tensor the QDQ graph folded away, what reached its producer."""
        if t in sqnr:
            return sqnr[t]
        p = producer.get(t)
        if p is None or depth > 8:
            return None  # an initializer (weights are not activations)
        vals = [v for i in p.input if (v := in_sqnr(i, depth + 1)) is not None]
        return min(vals) if vals else None

    def out_sqnr(t: str) -> float | None:
        """SQNR of ``t``; when QDQ folded the following Relu/Clip into this node, that activation's output."""
        if t in sqnr:
            return sqnr[t]
        folded = [c.output[0] for c in consumers.get(t, []) if c.op_type in FOLDED_ACTIVATIONS and c.output[0] in sqnr]
        return sqnr[folded[0]] if folded else None

    quantized = None if op_types is None else set(op_types) - set(FOLDED_ACTIVATIONS)
    scored = []
    for node in graph.node:
        if not node.name or node.name in exclude or (quantized is not None and node.op_type not in quantized):
            continue
        if node.op_type in FOLDED_ACTIVATIONS and node.input[0] not in sqnr:
            continue  # folded into its producer, which is scored (and excluded) for it
        outs = [v for o in node.output if (v := out_sqnr(o)) is not None]
        ins = [v for i in node.input if (v := in_sqnr(i)) is not None]
        if not outs or not ins:
            continue  # no activation in (a Constant, a shape computation): nothing of it is quantized
        # Relative noise power this node adds (NSR out - NSR in): a first conv going from the exact input to
        # 40 dB adds 1e-4, a node falling from 30 to 10 dB adds 0.1. (Differences in dB would rank the first
        # conv worst of all, merely because its input is exact.)
        scored.append((node.name, 10 ** (-min(outs) / 10) - 10 ** (-min(ins) / 10)))
    scored.sort(key=lambda x: -x[1])
    return scored[:k]


def _activation_sqnr(float_model: str | os.PathLike[str], qdq_model: str | os.PathLike[str],
                     data: Sequence[np.ndarray], input_name: str) -> dict[str, float]:
    """SQNR (dB, capped at :data:`MAX_SQNR_DB`) of every activation the float and QDQ graphs share by name, on
    ``data``; the input, which both read exactly, at the cap."""
    import tempfile

    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        modify_model_output_intermediate_tensors,
    )

    with tempfile.TemporaryDirectory() as tmp:
        fa, qa = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        modify_model_output_intermediate_tensors(os.fspath(float_model), fa)
        modify_model_output_intermediate_tensors(os.fspath(qdq_model), qa)
        f_acts = collect_activations(fa, _Reader(input_name, data))
        q_acts = collect_activations(qa, _Reader(input_name, data))
    # Compare every tensor the two graphs share by name (QDQ insertion keeps the float names; consumers read the
    # "_DequantizeLinear_Output" copy), not only the Q/DQ'd tensors ORT's create_activation_matching pairs: a node
    # whose input is not quantized (ReduceMean after an Add) would otherwise have no input SQNR.
    sqnr = {}
    for t, f in f_acts.items():
        q = q_acts.get(t + "_DequantizeLinear_Output", q_acts.get(t))
        if q is not None:
            sqnr[t] = min(MAX_SQNR_DB, compute_signal_to_quantization_noice_ratio(f, q))
    sqnr[input_name] = MAX_SQNR_DB
    return sqnr


def fold_input_normalization(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                             spec: InputSpec, zero_point: int = 128) -> QuantizedInput | None:
    """Rewrite an FP32 graph that reads the normalised NCHW tensor into one that reads ``rgb_pixel - Z`` on a
    padded canvas; return how the SDK must feed it (None, writing nothing, when the graph does not start with
    a plain Conv).

    Why: quantized with scale 1 and zero point Z (:func:`quantize_int8`'s ``input_qparams``), that input *is*
    the crop's bytes, and the SDK's whole preprocessing becomes a copy (:class:`~aligngemini_sdk.quantized_input.QuantizedInput`
    ``values="pixels"``). The first Conv absorbs the affine map: with ``x_c = (p_r(c) / scale - m_c) / s_c``
    and ``u = p - Z``, ``W'[o, r(c)] = W[o, c] / (scale * s_c)`` and ``b'_o = b_o + sum_c,k W[o, c, k] * d_c``,
    ``d_c = (Z / scale - m_c) / s_c`` (``r`` also absorbs a BGR colour order, so the input is always RGB).

    The Conv's zero padding cannot be folded: it pads the *normalised* image with 0, i.e. the pixel
    ``scale * m_c``, which ``u`` (on an integer grid, one zero point for all channels) cannot hold. Padding ``u``
    with 0 instead (pixel Z) moved the compact default expert's logits by 0.06 on average and flipped 1 of 148
    decisions in FP32 alone. So the padding moves out of the graph: the Conv gets no padding and the SDK places
    the crop on a canvas whose border is the nearest byte to ``scale * m_c`` (``QuantizedInput.pad``/``fill``);
    what remains is at most half a grey level on the border, against a full step of the quantized-normalised
    input everywhere (the exporter's gate measures both). Z is therefore free: any value represents every byte.

    A ViT's patch embedding (a stride-14 Conv without padding) folds exactly; the input may also feed
    ``Shape`` there, which is allowed only when the canvas has no border.

    The graph is first put through ONNX Runtime's basic (standard-ops) optimizations, as the quantizer's own
    pre-processing does: exporters often compute a "same" padding in a small subgraph (a ``Pad`` fed by
    ``ConstantOfShape``/``Concat``/``Slice``) that only constant folding and Pad fusion turn into the Conv's pads.
    """
    import onnx

    model = _basic_optimized(src)
    found = _input_conv(model)
    if found is None:
        return None
    conv, w, b, pads = found
    w_new, b_new, fill = _folded_conv_params(w, b, spec, int(zero_point))
    _replace_conv_params(model.graph, conv, w_new, b_new)
    top, left, bottom, right = pads
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for ax, extra in ((2, top + bottom), (3, left + right)):
        if dims[ax].HasField("dim_value"):
            dims[ax].dim_value += extra
    del model.graph.value_info[:]  # shapes downstream of the input are re-inferred by whoever loads it
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(dst))
    return QuantizedInput(scale=1.0, zero_point=int(zero_point), values="pixels", pad=(top, left, bottom, right),
                          fill=(fill[0], fill[1], fill[2]))


def _basic_optimized(src: str | os.PathLike[str]) -> Any:
    """The graph after ONNX Runtime's basic (standard-ops) optimizations: constant folding, Pad fusion."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = os.path.join(tmp, "basic.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(os.fspath(src), so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath)


def _input_conv(model: Any) -> tuple[Any, np.ndarray, np.ndarray, list[int]] | None:
    """The plain Conv that alone reads the float NCHW input (Shape readers aside): the node, its float64 weights
    and bias, and its padding (top, left, bottom, right) with the padding removed from the node. None when the
    graph does not start that way."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    if len(g.input) != 1 or g.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return None
    x = g.input[0]
    consumers = [n for n in g.node if x.name in n.input]
    # Besides the Conv, only Shape may read the input (ViT exports take the patch grid from it), and only if the
    # canvas keeps the input's size (checked below, once the padding is known)
    convs = [n for n in consumers if n.op_type != "Shape"]
    shape_readers = len(consumers) - len(convs)
    inits = {i.name: i for i in g.initializer}
    if len(x.type.tensor_type.shape.dim) != 4 or len(convs) != 1 or convs[0].op_type != "Conv" \
            or convs[0].input[0] != x.name:
        return None
    conv = convs[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    if attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        return None
    if any(p not in inits for p in conv.input[1:] if p):
        return None  # computed weights: not ours to rewrite
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        return None
    has_bias = len(conv.input) > 2 and bool(conv.input[2])
    b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
    pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])] if attrs.get("auto_pad", b"NOTSET") == b"NOTSET" \
        else [0, 0, 0, 0]
    if len(pads) != 4 or min(pads) < 0 or (shape_readers and any(pads)):
        return None
    for a in conv.attribute:
        if a.name == "pads":
            a.CopyFrom(helper.make_attribute("pads", [0, 0, 0, 0]))
    return conv, w, b, pads


def _folded_conv_params(w: np.ndarray, b: np.ndarray, spec: InputSpec,
                        z: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The first Conv's weights and bias with the affine map folded in (see :func:`fold_input_normalization`),
    and the canvas fill: per RGB channel, the nearest byte to the pixel the normalised zero stands for."""
    rgb_of = [2 - c if spec.color_order == "BGR" else c for c in range(3)]  # model channel c reads RGB channel
    # the spec's mean/std are in RGB order (as in preprocess.normalize_into); m, s: per *model* channel
    m = np.asarray(spec.mean, np.float64)[rgb_of]
    s = np.asarray(spec.std, np.float64)[rgb_of]
    scale = float(spec.scale)
    d = (z / scale - m) / s
    w_new = np.empty_like(w)
    fill = [0, 0, 0]
    for c in range(3):
        w_new[:, rgb_of[c]] = w[:, c] / (scale * s[c])
        fill[rgb_of[c]] = int(np.clip(np.rint(scale * m[c]), 0, 255))
    return w_new, b + (w.sum(axis=(2, 3)) * d).sum(axis=1), fill


def _replace_conv_params(g: Any, conv: Any, w_new: np.ndarray, b_new: np.ndarray) -> None:
    """New initializers for this Conv alone: the originals may be shared (ORT's optimizer merges equal constants,
    e.g. all-zero biases); those no other node reads are dropped."""
    from onnx import numpy_helper

    inits = {i.name: i for i in g.initializer}
    old_params = [p for p in conv.input[1:] if p]
    names = (conv.name or "input_conv") + "_folded_weight", (conv.name or "input_conv") + "_folded_bias"
    g.initializer.extend([numpy_helper.from_array(w_new.astype(np.float32), names[0]),
                          numpy_helper.from_array(b_new.astype(np.float32), names[1])])
    del conv.input[1:]
    conv.input.extend(names)
    still_read = {i for n in g.node for i in n.input}
    for p in old_params:
        if p not in still_read:
            g.initializer.remove(inits[p])


def to_uint8_input(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> QuantizedInput | None:
    """Make a static QDQ model take the quantized uint8 input in NHWC layout; return its parameters.

    A static QDQ graph begins ``input (float NCHW) -> QuantizeLinear -> DequantizeLinear -> Conv``: the model
    rounds the normalised float tensor straight back to uint8. We remove that QuantizeLinear and feed its
    output directly, computed by the SDK from the crop's bytes (:class:`~aligngemini_sdk.quantized_input.InputQuantizer`,
    byte-exact). The input is NHWC with a ``Transpose`` in the graph because that is the crop's own layout
    and ONNX Runtime's NHWC transformer for QLinearConv cancels the transpose (measured: no slower than
    NCHW). Everything after the first QuantizeLinear is untouched, so outputs are bit-identical.

    Returns None (and writes nothing) when the graph does not have that shape: a float input with other
    consumers, a per-channel or non-uint8 input quantization, a dynamic (float-input) INT8 model.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(os.fspath(src))
    g = model.graph
    if len(g.input) != 1 or g.input[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        return None
    x = g.input[0]
    dims = list(x.type.tensor_type.shape.dim)
    consumers = [n for n in g.node if x.name in n.input]
    if len(dims) != 4 or len(consumers) != 1 or consumers[0].op_type != "QuantizeLinear":
        return None
    q = consumers[0]
    inits = {i.name: i for i in g.initializer}
    if len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
        return None
    scale, zp = numpy_helper.to_array(inits[q.input[1]]), numpy_helper.to_array(inits[q.input[2]])
    if scale.size != 1 or zp.size != 1 or zp.dtype != np.uint8 or any(o.name == q.output[0] for o in g.output):
        return None
    nchw = [d.dim_param if d.HasField("dim_param") else (d.dim_value or None) for d in dims]
    if nchw[1] != 3:
        return None
    g.node.remove(q)
    g.input.remove(x)
    g.input.insert(0, helper.make_tensor_value_info(x.name, TensorProto.UINT8, [nchw[0], nchw[2], nchw[3], 3]))
    g.node.insert(0, helper.make_node("Transpose", [x.name], [q.output[0]], perm=[0, 3, 1, 2],
                                      name="input_nhwc_to_nchw"))
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(dst))
    return QuantizedInput(scale=float(scale.reshape(())), zero_point=int(zp.reshape(())))
