"""INT8 quantization helpers: ORT chunking workaround, output bias correction, compute-op selection."""

import numpy as np
import onnx
from aligngemini_sdk import Bundle
from aligngemini_sdk.dataset import load_collection
from aligngemini_sdk.export.quantize import _chunk, correct_output_bias, model_logits, quantize_int8
from aligngemini_sdk.image import load_image, preprocess


def _quantized_op_types(path) -> set[str]:
    """Op types that read a dequantized activation, i.e. run on INT8 data in a QDQ graph."""
    g = onnx.load(str(path)).graph
    weights = {t.name for t in g.initializer}
    dq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] not in weights}
    return {n.op_type for n in g.node if set(n.input) & dq}


def test_chunk_never_divides_the_image_count():
    for n in range(1, 600):
        assert n % _chunk(n) != 0 or n <= 2


def test_bias_correction_removes_the_mean_logit_shift(ladeda_bundle, collection, tmp_path):
    b = Bundle.open(ladeda_bundle)
    fp32 = b.verified_path(b.manifest.pixel.artifacts["fp32"].files["model"])
    data = [preprocess(load_image(s.path).rgb, b.manifest.pixel.input) for s in load_collection(collection)]
    q = quantize_int8(fp32, tmp_path / "q.onnx", data)
    # DEFAULT_OP_TYPES quantizes the compute ops only: the global pooling stays in float, which ORT's every-op
    # default (op_types=None) would quantize
    every = quantize_int8(fp32, tmp_path / "all.onnx", data, op_types=None)
    assert {"Conv", "Gemm"} <= _quantized_op_types(q) and "ReduceMean" not in _quantized_op_types(q)
    assert "ReduceMean" in _quantized_op_types(every)
    f_logits = model_logits(fp32, data)
    delta = correct_output_bias(f_logits, q, data)
    assert delta != 0.0
    residual = correct_output_bias(f_logits, q, data)  # measured again after the fix: nothing left to correct
    assert abs(residual) < 1e-4
    assert any(n.name == "output_bias_correction" for n in onnx.load(str(q)).graph.node)
    assert np.isfinite(delta)
