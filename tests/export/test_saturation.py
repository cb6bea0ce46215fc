"""INT8 that no CPU kernel can overflow: the AVX2 pair-sum arithmetic, the per-node bound, and the exporter
refusing or repairing a file that could saturate. Every assertion holds on any x86-64 or ARM CPU: where the
CPU legitimately matters, the test checks the invariant (the kernel computes the exact product or the AVX2
pair-saturated one), not one machine's answer."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from aligngemini_sdk import Bundle
from aligngemini_sdk.export.pixel import GateThresholds, PixelExportConfig, export_pixel
from aligngemini_sdk.export.quantize import quantize_int8
from aligngemini_sdk.export.saturation import (
    INT16_MAX,
    SAFE_WEIGHT_MAX,
    emulate_u8s8_avx2,
    exact_u8s8,
    prove,
    prove_file,
    worst_pair_sum,
)
from aligngemini_sdk.manifest import InputSpec
from tests.conftest import needs_emulated_avx2, on_emulated_avx2
from tests.export.test_pixel import Tiny

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def _matmul_integer(w: np.ndarray) -> onnx.ModelProto:
    """uint8 activations x a constant int8 weight, int32 out: ONNX Runtime runs it on MLAS's u8s8 kernel."""
    k, n = w.shape
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, k])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [None, n])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, a: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": a})[0]


def _saturating_layer(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (64, 16)).astype(np.int8)
    w[:, 0] = 127  # a column whose every pair overflows int16 when the activation is 255
    a = rng.integers(0, 256, (8, 64)).astype(np.uint8)
    a[0] = 255
    return a, w


def test_avx2_arithmetic_saturates_pair_sums_that_exact_arithmetic_keeps():
    a, w = _saturating_layer()
    exact, avx2 = exact_u8s8(a, w), emulate_u8s8_avx2(a, w)
    assert exact[0, 0] == 64 * 255 * 127
    assert avx2[0, 0] == 32 * INT16_MAX  # every pair clipped
    # 7-bit weights: the same product, exact under the AVX2 arithmetic for every input
    w7 = np.clip(np.rint(w / 2), -SAFE_WEIGHT_MAX, SAFE_WEIGHT_MAX).astype(np.int8)
    np.testing.assert_array_equal(emulate_u8s8_avx2(a, w7), exact_u8s8(a, w7))


def test_the_bound_does_not_depend_on_which_weights_a_kernel_pairs():
    """A weight the bound calls safe stays exact under the AVX2 arithmetic for any order of the summed axis
    (kernels pack K differently per layout); one it calls unsafe saturates for some input."""
    rng = np.random.default_rng(1)
    w7 = rng.integers(-SAFE_WEIGHT_MAX, SAFE_WEIGHT_MAX + 1, (27, 8)).astype(np.int8)
    a = np.full((1, 27), 255, np.uint8)
    assert worst_pair_sum(w7, channel_axis=1) <= INT16_MAX
    for _ in range(20):
        perm = rng.permutation(27)
        np.testing.assert_array_equal(emulate_u8s8_avx2(a[:, perm], w7[perm]), exact_u8s8(a, w7))
    w8 = w7.copy()
    w8[:2, 3] = 100  # two same-sign weights whose pair exceeds int16 at 255
    assert worst_pair_sum(w8, channel_axis=1) == 255 * 200 > INT16_MAX
    assert not np.array_equal(emulate_u8s8_avx2(a, w8), exact_u8s8(a, w8))


def test_onnxruntime_computes_the_exact_or_the_avx2_product_and_7_bit_weights_are_exact_everywhere():
    a, w = _saturating_layer()
    got = _run(_matmul_integer(w), a)
    exact, avx2 = exact_u8s8(a, w), emulate_u8s8_avx2(a, w)
    # the CPU decides which (AVX2 / AVX-512BW: pair-saturated; VNNI, AMX, ARM dot product: exact), nothing else
    assert np.array_equal(got, exact) or np.array_equal(got, avx2)
    assert not prove(_matmul_integer(w).graph).safe
    w7 = np.clip(np.rint(w / 2), -SAFE_WEIGHT_MAX, SAFE_WEIGHT_MAX).astype(np.int8)
    proof = prove(_matmul_integer(w7).graph)
    assert proof.safe and proof.worst <= INT16_MAX and proof.to_dict()["nodes_checked"] == 1
    np.testing.assert_array_equal(_run(_matmul_integer(w7), a), exact_u8s8(a, w7))



_RUN_SAVED = ("import sys, numpy as np, onnxruntime as ort; d = sys.argv[1]; a = np.load(d + '/a.npy', allow_pickle=False)\n"
              "for n in ('w8', 'w7'):\n"
              "    s = ort.InferenceSession(f'{d}/{n}.onnx', providers=['CPUExecutionProvider'])\n"
              "    np.save(f'{d}/{n}.out.npy', s.run(None, {'a': a})[0])")


@needs_emulated_avx2
def test_on_an_emulated_avx2_cpu_onnxruntime_saturates_8_bit_weights_and_7_bit_ones_stay_exact(tmp_path):
    """What the bound guards against, shown on the kernel itself: ONNX Runtime on an AVX2-only CPU computes exactly
    the pair-saturating arithmetic :func:`emulate_u8s8_avx2` models, bit for bit, and 7-bit weights come out exact."""
    a, w = _saturating_layer()
    w7 = np.clip(np.rint(w / 2), -SAFE_WEIGHT_MAX, SAFE_WEIGHT_MAX).astype(np.int8)
    np.save(tmp_path / "a.npy", a)
    onnx.save(_matmul_integer(w), tmp_path / "w8.onnx")
    onnx.save(_matmul_integer(w7), tmp_path / "w7.onnx")
    on_emulated_avx2("-c", _RUN_SAVED, str(tmp_path))
    got8, got7 = (np.load(tmp_path / f"{n}.out.npy", allow_pickle=False) for n in ("w8", "w7"))
    np.testing.assert_array_equal(got8, emulate_u8s8_avx2(a, w))
    assert not np.array_equal(got8, exact_u8s8(a, w))  # the emulated CPU really saturates
    np.testing.assert_array_equal(got7, exact_u8s8(a, w7))

def _conv_model(path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
    torch.onnx.export(net, (torch.randn(1, 3, 16, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamo=False)


def test_static_quantization_stores_7_bit_weights_by_default_and_8_bit_ones_fail_the_bound(tmp_path):
    _conv_model(tmp_path / "f.onnx")
    calib = list(np.random.default_rng(0).normal(size=(16, 3, 16, 16)).astype(np.float32))
    safe = prove_file(quantize_int8(tmp_path / "f.onnx", tmp_path / "q7.onnx", calib))
    assert safe.safe and safe.worst <= 255 * 2 * SAFE_WEIGHT_MAX and len(safe.nodes) == 2
    unsafe = prove_file(quantize_int8(tmp_path / "f.onnx", tmp_path / "q8.onnx", calib, weights="s8"))
    assert not unsafe.safe and len(unsafe.unsafe) == 2 and "saturate" in unsafe.reason()
    # uint8 weights: safe by kernel (u8 x u8 products are widened before they are added)
    u8 = prove_file(quantize_int8(tmp_path / "f.onnx", tmp_path / "u8.onnx", calib, weights="u8"))
    assert u8.safe and u8.to_dict()["weight_types"] == ["uint8"]


def test_export_repairs_8_bit_weights_and_records_the_proof(tmp_path, collection):
    """Asked for 8-bit int8 weights, the exporter finds that an AVX2 kernel could saturate, re-quantizes with 7-bit
    weights, and the manifest carries the proof; the gate judged the reference arithmetic."""
    torch.manual_seed(5)
    export_pixel(PixelExportConfig(arch="module", module=Tiny().eval(), out=tmp_path / "b",
                                   input=InputSpec(height=96, width=96), calib=str(collection), val=str(collection),
                                   allow_small_calib=True, precisions=("int8",), fallback_rounds=0,
                                   int8_weights="s8", gate=GateThresholds(min_agreement=0.5, max_bacc_drop=1.0)))
    b = Bundle.open(tmp_path / "b")
    art = b.manifest.pixel.artifacts["int8"]
    cal = art.options["calibration"]
    assert cal["weights"] == "s7" and cal["int8_safety"]["safe"] and cal["int8_safety"]["worst_pair_sum"] <= INT16_MAX
    assert prove_file(b.verified_path(art.files["model"])).safe
    gate = b.manifest.pixel.validation["artifacts"]["int8"]
    assert set(gate["kernels_vs_reference"]) >= {"mean_abs_dp", "max_abs_dp", "flips", "cpu"}


def _widen_to_s8(path) -> None:
    """Turn a file's 7-bit weights into full-range int8 ones (q * 2, scale / 2, biases to match): the same model,
    now with weights an AVX2 kernel can saturate, as an 8-bit exporter would have written it."""
    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[0]])
        if q.dtype not in (np.int8, np.int32):
            continue
        s = numpy_helper.to_array(inits[node.input[1]])
        wide = np.clip(q.astype(np.int64) * 2, -127, 127) if q.dtype == np.int8 else q.astype(np.int64) * 2
        inits[node.input[0]].CopyFrom(numpy_helper.from_array(wide.astype(q.dtype), node.input[0]))
        inits[node.input[1]].CopyFrom(numpy_helper.from_array((s / 2).astype(s.dtype), node.input[1]))
    onnx.save(proto, str(path))


def test_harden_reencodes_an_int8_bundle_losslessly_and_makes_it_verifiable(tmp_path, collection):
    """An existing bundle whose int8 weights can saturate: ``export harden`` re-encodes them as uint8, the reference
    arithmetic stays bit-identical, the proof holds, and the hardened bundle carries golden outputs that pass."""
    import json

    from aligngemini_sdk.conformance import verify_bundle
    from aligngemini_sdk.dataset import list_images
    from aligngemini_sdk.export.bundle_writer import file_entry
    from aligngemini_sdk.export.harden import harden_bundle

    torch.manual_seed(7)
    src = tmp_path / "src"
    export_pixel(PixelExportConfig(arch="module", module=Tiny().eval(), out=src, input=InputSpec(height=96, width=96),
                                   calib=str(collection), val=str(collection), allow_small_calib=True,
                                   precisions=("int8",), fallback_rounds=0, pixel_input=False,
                                   gate=GateThresholds(min_agreement=0.5, max_bacc_drop=1.0)))
    model = src / "pixel" / "model.int8.onnx"
    _widen_to_s8(model)
    m = json.loads((src / "manifest.json").read_text())
    files = m["branches"]["pixel"]["artifacts"]["int8"]["files"]
    files["model"].update(file_entry(src, files["model"]["path"]).__dict__)
    (src / "manifest.json").write_text(json.dumps(m))
    unsafe = prove_file(model).unsafe
    assert unsafe
    # verify re-derives the bound from the file: golden outputs alone pass on a CPU whose kernels do not saturate
    before = verify_bundle(Bundle.open(src))
    assert not before.passed and "can saturate" in before.failures()[0].saturation
    [rep] = harden_bundle(src, tmp_path / "out", list_images(collection)[:20])
    assert rep.reencoded == len(unsafe) and rep.reference_identical  # only what the bound cannot clear
    b = Bundle.open(tmp_path / "out")
    cal = b.manifest.pixel.artifacts["int8"].options["calibration"]
    assert cal["weights"] == "u8" and cal["int8_safety"]["safe"]
    assert prove_file(b.verified_path(b.manifest.pixel.artifacts["int8"].files["model"])).safe
    assert verify_bundle(b).passed and b.manifest.bundle_id != Bundle.open(src).manifest.bundle_id


class _Attention(torch.nn.Module):
    """One attention block's products: two weight MatMuls and two activation x activation ones (Q K^T, A V)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = torch.nn.Linear(16, 48), torch.nn.Linear(16, 16)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(torch.softmax(q @ k.transpose(-1, -2) / 4, dim=-1) @ v)


def test_attention_products_quantized_per_call_are_u8_x_u8_and_proved_safe(tmp_path):
    """``attention=True`` quantizes Q K^T and A V too, both operands uint8 per call (DynamicQuantizeLinear): the proof
    reads their operand type from the graph and calls them safe; off (the default), only weight products are INT8."""
    from aligngemini_sdk.export.quantize import quantize_int8_dynamic

    torch.manual_seed(0)
    x = torch.randn(1, 10, 16)
    torch.onnx.export(_Attention().eval(), (x,), str(tmp_path / "f.onnx"), input_names=["x"], output_names=["y"],
                      dynamo=False)
    weights_only = prove_file(quantize_int8_dynamic(tmp_path / "f.onnx", tmp_path / "w.onnx"))
    both = prove_file(quantize_int8_dynamic(tmp_path / "f.onnx", tmp_path / "a.onnx", attention=True))
    assert weights_only.safe and {n.weight_type for n in weights_only.nodes} == {"int8"}
    assert both.safe and len(both.nodes) == len(weights_only.nodes) + 2
    activation_products = [n for n in both.nodes if n.weight_type == "uint8"]
    assert len(activation_products) == 2 and all("activation operand" in n.why for n in activation_products)
    # the file still computes the same function, within quantization noise
    f, a = (ort.InferenceSession(str(tmp_path / n), providers=["CPUExecutionProvider"]) for n in ("f.onnx", "a.onnx"))
    ref, got = f.run(None, {"x": x.numpy()})[0], a.run(None, {"x": x.numpy()})[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_u8_x_u8_products_are_exact_on_every_kernel():
    """The claim the proof makes for uint8 x uint8 products: exact at the extreme (every operand 255)."""
    a = np.full((4, 64), 255, np.uint8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 64]),
                           helper.make_tensor_value_info("b", TensorProto.UINT8, [64, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [None, 8])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    b = np.full((64, 8), 255, np.uint8)
    np.testing.assert_array_equal(sess.run(None, {"a": a, "b": b})[0], a.astype(np.int64) @ b.astype(np.int64))
