"""INT8 quantization helpers: calibration over every image, activations folded into their op, output bias
correction, compute-op selection, the fallback search's ranking of the nodes that lose the most, and the input
side (uint8 input, normalisation folded into the first Conv)."""

import numpy as np
import onnx
import pytest

from aligngemini_sdk import Bundle
from aligngemini_sdk.dataset import load_collection
from aligngemini_sdk.export.quantize import (
    correct_output_bias,
    model_logits,
    quantize_int8,
    sqnr_shortlist,
)
from aligngemini_sdk.image import load_image
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from aligngemini_sdk.preprocess import preprocess

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def _quantized_op_types(path) -> set[str]:
    """Op types that read a dequantized activation, i.e. run on INT8 data in a QDQ graph."""
    g = onnx.load(str(path)).graph
    weights = {t.name for t in g.initializer}
    dq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] not in weights}
    return {n.op_type for n in g.node if set(n.input) & dq}


def _output_range(path) -> tuple[float, float]:
    """The float range the QDQ graph can represent at its output (the Q/DQ pair producing the graph output)."""
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    dq = next(n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == g.output[0].name)
    scale, zp = float(init[dq.input[1]]), int(init[dq.input[2]])
    return (0 - zp) * scale, (255 - zp) * scale


def _ladeda_data(ladeda_bundle, collection):
    b = Bundle.open(ladeda_bundle)
    fp32 = b.verified_path(b.manifest.pixel.artifacts["fp32"].files["model"])
    return fp32, [preprocess(load_image(s.path).rgb, b.manifest.pixel.input) for s in load_collection(collection)]


def test_calibration_ranges_cover_every_calibration_image(ladeda_bundle, collection, tmp_path):
    # ORT 1.32 loses all but the last chunk of images when asked to reduce ranges in chunks; put the images with
    # the extreme logits first, so a calibration that forgets early images cannot cover them
    fp32, data = _ladeda_data(ladeda_bundle, collection)
    assert len(data) > 16
    logits = model_logits(fp32, data)[:, 0]
    first = [int(np.argmin(logits)), int(np.argmax(logits))]
    data = [data[i] for i in first] + [d for i, d in enumerate(data) if i not in first]
    lo, hi = _output_range(quantize_int8(fp32, tmp_path / "q.onnx", data))
    step = (hi - lo) / 255
    assert lo <= logits.min() + step and hi >= logits.max() - step, (lo, hi, logits.min(), logits.max())


def test_relu_is_folded_into_the_quantized_op_it_follows(ladeda_bundle, collection, tmp_path):
    # Left in the graph, the Conv output would be rounded on its raw pre-activation range, then clipped
    fp32, data = _ladeda_data(ladeda_bundle, collection)
    assert any(n.op_type == "Relu" for n in onnx.load(str(fp32)).graph.node)
    q = quantize_int8(fp32, tmp_path / "q.onnx", data)
    assert not any(n.op_type == "Relu" for n in onnx.load(str(q)).graph.node)


def _outlier_head_model(tmp_path):
    """conv-relu-conv-relu, mean pool, a constant gain (one channel 1000x the rest) and a linear head that ignores
    that channel; returns (float ONNX path, 20 random inputs)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
            self.register_buffer("gain", torch.tensor([1000.0] + [1.0] * 7))
            self.head = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x).mean(dim=(2, 3)) * self.gain)

    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():
        model.head.weight[0, 0] = 0.0
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(fp32), input_names=["x"], output_names=["y"],
                      dynamo=False)
    rng = np.random.default_rng(0)
    return fp32, [rng.normal(size=(3, 32, 32)).astype(np.float32) for _ in range(20)]


def test_shortlist_blames_the_node_that_adds_the_error(tmp_path):
    """The head's input has one channel 1000x larger than the rest (and the head ignores that channel): per-tensor
    uint8 at the head's input spends its whole grid on the outlier and rounds the useful channels away. The head
    adds that noise -- not the first conv, whose input merely happens to be exact -- and must rank first."""
    fp32, data = _outlier_head_model(tmp_path)
    q = quantize_int8(fp32, tmp_path / "q.onnx", data)
    ranked = sqnr_shortlist(fp32, q, data[:8], k=3)
    head = next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Gemm")
    assert ranked[0][0] == head, ranked
    assert all(np.isfinite(score) for _, score in ranked)
    # only what the quantizer quantizes is a candidate: keeping a Constant, a pooling or the Mul "in float"
    # would change nothing
    op_of = {n.name: n.op_type for n in onnx.load(str(fp32)).graph.node}
    everything = sqnr_shortlist(fp32, q, data[:8], k=50)
    assert {op_of[n] for n, _ in everything} == {"Conv", "Gemm"}


def test_default_leaves_elementwise_ops_in_float(tmp_path):
    # DEFAULT_OP_TYPES quantizes the compute ops (and folds their activations): the Mul between pooling and head
    # stays in float, which ORT's every-op default (op_types=None) would wrap in Q/DQ
    fp32, data = _outlier_head_model(tmp_path)
    default = _quantized_op_types(quantize_int8(fp32, tmp_path / "q.onnx", data))
    every = _quantized_op_types(quantize_int8(fp32, tmp_path / "all.onnx", data, op_types=None))
    assert {"Conv", "Gemm"} <= default and "Mul" not in default
    assert "Mul" in every


def test_bias_correction_removes_the_mean_logit_shift(ladeda_bundle, collection, tmp_path):
    fp32, data = _ladeda_data(ladeda_bundle, collection)
    q = quantize_int8(fp32, tmp_path / "q.onnx", data)
    assert {"Conv", "Gemm"} <= _quantized_op_types(q)
    f_logits = model_logits(fp32, data)
    delta = correct_output_bias(f_logits, q, data)
    assert delta != 0.0
    residual = correct_output_bias(f_logits, q, data)  # measured again after the fix: nothing left to correct
    assert abs(residual) < 1e-4
    assert any(n.name == "output_bias_correction" for n in onnx.load(str(q)).graph.node)
    assert np.isfinite(delta)


def test_uint8_input_artifact_gives_bit_identical_outputs(ladeda_bundle, collection, tmp_path):
    """Removing the input QuantizeLinear and feeding the SDK's quantized bytes changes nothing downstream."""
    from aligngemini_sdk.export.quantize import to_uint8_input
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel

    fp32, data = _ladeda_data(ladeda_bundle, collection)
    spec = Bundle.open(ladeda_bundle).manifest.pixel.input
    q_float = quantize_int8(fp32, tmp_path / "q.onnx", data)
    q = to_uint8_input(q_float, tmp_path / "q8.onnx")
    assert q is not None and q.layout == "NHWC" and 0 <= q.zero_point <= 255
    g = onnx.load(str(tmp_path / "q8.onnx")).graph
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert not any(n.op_type == "QuantizeLinear" and g.input[0].name in n.input for n in g.node)
    float_rt = OnnxRuntimePixel(q_float, spec, device="cpu")
    uint8_rt = OnnxRuntimePixel(tmp_path / "q8.onnx", spec, device="cpu", input_quantization=q)
    images = [load_image(s.path).rgb for s in load_collection(collection)]  # full images, several sizes
    a, b = float_rt.predict(images), uint8_rt.predict(images)
    assert len(set(a.round(6))) > 3  # a real spread of scores, not one constant
    np.testing.assert_array_equal(a, b)


def test_uint8_input_declines_graphs_that_do_not_start_with_a_quantize(ladeda_bundle, tmp_path):
    from aligngemini_sdk.export.quantize import quantize_int8_dynamic, to_uint8_input

    b = Bundle.open(ladeda_bundle)
    fp32 = b.verified_path(b.manifest.pixel.artifacts["fp32"].files["model"])
    dyn = quantize_int8_dynamic(fp32, tmp_path / "dyn.onnx")
    for src in (fp32, dyn):
        assert to_uint8_input(src, tmp_path / "out.onnx") is None
        assert not (tmp_path / "out.onnx").exists()


# -- folding the input normalisation into the first Conv (artifacts that take the crop's bytes) ------------------
def _conv_first_model(tmp_path, lead=None, groups=1):
    """[lead] -> Conv(3->8, 3x3, stride 2) -> ReLU -> mean -> Linear, exported by torch; ``lead`` is a module
    run before the Conv (a ZeroPad2d makes the "same"-padding subgraph exporters emit)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=0 if lead is not None else 1, groups=groups)
    model = nn.Sequential(*([lead] if lead is not None else []), conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(6, 1)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), input_names=["x"], output_names=["y"],
                      dynamo=False)
    return path


def _conv_output(path, feed):
    """The first Conv's raw output (before ReLU), by exposing it as a graph output."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    model.graph.output.append(onnx.helper.make_tensor_value_info(conv.output[0], onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([conv.output[0]], {sess.get_inputs()[0].name: feed})[0]


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("lead", ["conv padding", "ZeroPad2d"])
def test_folded_graph_reads_rgb_pixels_on_a_canvas_and_computes_the_same_conv(tmp_path, order, lead):
    """With a mean whose pixel value is a whole byte, the canvas border holds the normalised zero exactly: the
    folded Conv equals the original everywhere, padding included, up to float rounding."""
    from torch import nn

    from aligngemini_sdk.export.quantize import fold_input_normalization
    from aligngemini_sdk.preprocess import normalize
    from aligngemini_sdk.quantized_input import InputQuantizer

    fp32 = _conv_first_model(tmp_path, nn.ZeroPad2d((0, 1, 0, 1)) if lead == "ZeroPad2d" else None)
    spec = InputSpec(height=64, width=64, mean=(0.4, 0.6, 0.2), std=(0.2, 0.25, 0.3), color_order=order)
    q = fold_input_normalization(fp32, tmp_path / "folded.onnx", spec)
    pad = (0, 0, 1, 1) if lead == "ZeroPad2d" else (1, 1, 1, 1)
    assert q is not None and q.values == "pixels" and q.scale == 1.0 and q.pad == pad
    assert q.fill == (102, 153, 51)  # 255 * mean, in RGB order whatever the model's colour order
    g = onnx.load(str(tmp_path / "folded.onnx")).graph
    conv = next(n for n in g.node if n.op_type == "Conv")
    assert g.node[0] is conv or g.node[0].op_type == "Conv"  # the Pad is gone: its padding is the SDK's canvas
    assert list(next(a for a in conv.attribute if a.name == "pads").ints) == [0, 0, 0, 0]
    rng = np.random.default_rng(0)
    for _ in range(3):
        crop = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        ref = _conv_output(fp32, normalize(crop, spec)[None])
        u = (InputQuantizer(spec, q)(crop).transpose(2, 0, 1).astype(np.float32) - q.zero_point)[None]
        np.testing.assert_allclose(_conv_output(tmp_path / "folded.onnx", u), ref, atol=2e-4)


def test_folding_imagenet_mean_leaves_at_most_half_a_grey_level_on_the_border(tmp_path):
    """ImageNet's mean is no whole byte (123.675, 116.28, 103.53): the border is the nearest byte, so the
    folded Conv is exact inside and off by at most the weights times half a grey level where it reads the
    border -- not by the weights times the whole mean, as padding the pixels with zero would be."""
    from aligngemini_sdk.export.quantize import fold_input_normalization
    from aligngemini_sdk.preprocess import normalize
    from aligngemini_sdk.quantized_input import InputQuantizer

    fp32 = _conv_first_model(tmp_path)
    spec = InputSpec(height=64, width=64, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    q = fold_input_normalization(fp32, tmp_path / "folded.onnx", spec)
    assert q is not None and q.fill == (124, 116, 104)
    crop = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ref = _conv_output(fp32, normalize(crop, spec)[None])[0]
    u = (InputQuantizer(spec, q)(crop).transpose(2, 0, 1).astype(np.float32) - q.zero_point)[None]
    got = _conv_output(tmp_path / "folded.onnx", u)[0]
    inner = (slice(None), slice(1, -1), slice(1, -1))  # outputs whose window never reaches the border
    np.testing.assert_allclose(got[inner], ref[inner], atol=2e-4)
    w = numpy_weights(fp32)
    half_level = 0.5 / (255 * np.asarray(IMAGENET_STD))  # normalised size of half a grey level per channel
    bound = (np.abs(w) * half_level[None, :, None, None]).sum(axis=(1, 2, 3))[:, None, None] + 2e-4
    assert (np.abs(got - ref) <= bound).all()
    assert np.abs(got - ref).max() > 1e-3  # the border does differ: this bound is what is being tested


def numpy_weights(path):
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    conv = next(n for n in g.node if n.op_type == "Conv")
    return numpy_helper.to_array(next(i for i in g.initializer if i.name == conv.input[1])).astype(np.float64)


def test_fold_declines_graphs_that_do_not_start_with_a_plain_conv(tmp_path):
    import torch
    from torch import nn

    from aligngemini_sdk.export.quantize import fold_input_normalization

    class Scale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2.0

    spec = InputSpec(height=64, width=64)
    grouped = _conv_first_model(tmp_path, groups=3)
    assert fold_input_normalization(grouped, tmp_path / "out.onnx", spec) is None
    (tmp_path / "m.onnx").unlink()
    scaled = _conv_first_model(tmp_path, Scale())
    assert fold_input_normalization(scaled, tmp_path / "out.onnx", spec) is None
    assert not (tmp_path / "out.onnx").exists()


def test_input_qparams_fix_the_input_quantization_to_whole_bytes(tmp_path):
    from aligngemini_sdk.export.quantize import fold_input_normalization, to_uint8_input

    fp32 = _conv_first_model(tmp_path)
    q = fold_input_normalization(fp32, tmp_path / "folded.onnx", InputSpec(height=64, width=64))
    rng = np.random.default_rng(0)
    calib = [rng.integers(20, 200, (3, 66, 66)).astype(np.float32) - q.zero_point for _ in range(8)]  # no 0 or 255
    qdq = quantize_int8(tmp_path / "folded.onnx", tmp_path / "q.onnx", calib, input_qparams=(1.0, q.zero_point))
    got = to_uint8_input(qdq, tmp_path / "q8.onnx")
    assert got is not None and (got.scale, got.zero_point) == (1.0, q.zero_point)


def test_a_vit_patch_embedding_folds_exactly(tmp_path):
    """DINOv2's patch embedding is a stride-14 Conv without padding, and its export also reads the input's Shape:
    the fold is exact (no canvas border), the Shape reader is kept, and equal constants ORT merged (zero biases)
    are not rewritten for their other readers."""
    import onnxruntime as ort

    from aligngemini_sdk.export.pixel import export_onnx
    from aligngemini_sdk.export.quantize import fold_input_normalization
    from aligngemini_sdk.preprocess import normalize
    from aligngemini_sdk.quantized_input import InputQuantizer
    from tests.export.test_dinov2 import SPEC, tiny_dinov2

    fp32 = tmp_path / "vit.onnx"
    export_onnx(tiny_dinov2(), fp32, SPEC)
    q = fold_input_normalization(fp32, tmp_path / "folded.onnx", SPEC)
    assert q is not None and q.pad == (0, 0, 0, 0)
    g = onnx.load(str(tmp_path / "folded.onnx")).graph
    assert {n.op_type for n in g.node if g.input[0].name in n.input} == {"Shape", "Conv"}
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(tmp_path / "folded.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        crop = rng.integers(0, 256, (SPEC.height, SPEC.width, 3), dtype=np.uint8)
        u = (InputQuantizer(SPEC, q)(crop).transpose(2, 0, 1).astype(np.float32) - q.zero_point)[None]
        ref = a.run(None, {a.get_inputs()[0].name: normalize(crop, SPEC)[None]})[0]
        np.testing.assert_allclose(b.run(None, {b.get_inputs()[0].name: u})[0], ref, atol=1e-4, rtol=1e-4)
