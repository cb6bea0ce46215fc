"""sdk/quantized_input.py: the uint8 input of static INT8 artifacts -- the bytes ONNX Runtime's QuantizeLinear would
have computed from the float normalisation, by lookup table or OpenCV's transform where it is exact."""

import numpy as np
import pytest

from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import fit_to_spec, normalize
from tests.sdk.test_preprocess import photo_rgb

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

# -- quantized uint8 input (static INT8 artifacts) -------------------------------------------------------------
QUANT_CASES = [  # (mean, std, colour order, scale, zero point): the default bundle's, CLIP's, BGR, saturating
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB", 0.018658448, 114),
    ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), "RGB", 0.0152, 121),
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "BGR", 0.02, 100),
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB", 0.1, 255),  # most values saturate at 255
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "RGB", 0.0078125, 128),
]


@pytest.mark.parametrize("mean,std,order,scale,zp", QUANT_CASES)
def test_quantization_lut_is_what_onnxruntime_quantizelinear_computes(mean, std, order, scale, zp):
    """The uint8-input artifact must see the bytes the float-input one computed internally: the SDK's float
    normalisation of every byte value, then ORT's own QuantizeLinear."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from aligngemini_sdk.quantized_input import QuantizedInput, quantization_lut

    spec = InputSpec(mean=mean, std=std, color_order=order, layout="NHWC")
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # (256, 1, 3)
    x = normalize(ramp, spec).reshape(256, 3)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 3])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [256, 3])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [scale]), helper.make_tensor("z", TensorProto.UINT8, [], [zp])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(quantization_lut(spec, QuantizedInput(scale, zp)), sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("mean,std,order,scale,zp", QUANT_CASES)
def test_input_quantizer_is_byte_exact_and_uses_opencv_only_where_it_is(mean, std, order, scale, zp):
    import cv2

    from aligngemini_sdk.quantized_input import InputQuantizer, QuantizedInput

    spec = InputSpec(height=224, width=224, mean=mean, std=std, color_order=order)
    q = InputQuantizer(spec, QuantizedInput(scale, zp))
    crop = fit_to_spec(photo_rgb(), spec)  # a non-contiguous view into the photo, as in the SDK
    src = crop[:, :, ::-1] if order == "BGR" else crop
    expected = np.stack([q.lut[src[:, :, c], c] for c in range(3)], axis=-1)  # model channel c from its byte
    np.testing.assert_array_equal(q(crop), expected)
    # the fast OpenCV kernel is used only where it reproduces the lookup table (it rounds differently for
    # some coefficients: the saturating case here); the exact lookup serves the rest
    ramp = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1)[None]
    if not np.array_equal(cv2.transform(ramp, q._matrix), q._lookup(ramp)):
        assert q.method == "lut"
    if q.method == "transform":
        np.testing.assert_array_equal(cv2.transform(np.ascontiguousarray(crop), q._matrix), expected)


def test_quantized_input_options_are_validated():
    from aligngemini_sdk.quantized_input import QuantizedInput

    q = QuantizedInput(0.02, 114)
    assert QuantizedInput.from_options({"input": q.to_options()}) == q
    assert QuantizedInput.from_options({}) is None
    pixels = QuantizedInput(1.0, 128, values="pixels", pad=(0, 0, 1, 1), fill=(124, 116, 104))
    assert QuantizedInput.from_options({"input": pixels.to_options()}) == pixels
    assert "pad" not in q.to_options()  # only pixel inputs have a canvas
    for bad in ({"scale": 0.02}, {"scale": -1, "zero_point": 3}, {"scale": 0.02, "zero_point": 300},
                {"scale": 0.02, "zero_point": 3, "layout": "NCHW"}, {"scale": "x", "zero_point": 3},
                {"scale": 0.02, "zero_point": 3, "values": "logits"},
                {"scale": 0.5, "zero_point": 128, "values": "pixels"},  # pixels are on the integer grid
                {"scale": 0.02, "zero_point": 3, "pad": [0, 0, 1, 1]},  # a quantized input has no canvas
                {"scale": 1.0, "zero_point": 128, "values": "pixels", "pad": [0, 1]},
                {"scale": 1.0, "zero_point": 128, "values": "pixels", "pad": [0, 0, 0, -1]},
                {"scale": 1.0, "zero_point": 128, "values": "pixels", "fill": [0, 0, 256]}):
        with pytest.raises(ValueError):
            QuantizedInput.from_options({"input": bad})


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (0, 0, 1, 1), (1, 2, 3, 1)])
def test_pixel_input_is_the_crop_itself_on_its_padded_canvas(pad):
    """An artifact that folded its normalisation takes the crop's RGB bytes; the first Conv's padding becomes a
    border of the fill colour around them. Whatever the colour order the model was trained in."""
    from aligngemini_sdk.quantized_input import InputQuantizer, QuantizedInput
    from aligngemini_sdk.runtimes.base import batched_tensors

    fill = (124, 116, 104)
    spec = InputSpec(height=224, width=224, color_order="BGR")
    q = InputQuantizer(spec, QuantizedInput(1.0, 128, values="pixels", pad=pad, fill=fill))
    assert q.method == "copy"
    crop = fit_to_spec(photo_rgb(), spec)
    top, left, bottom, right = pad
    out = q(crop)
    assert out.shape == (224 + top + bottom, 224 + left + right, 3) == q.shape(224, 224) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[top:top + 224, left:left + 224], crop)  # RGB, untouched
    border = np.ones(out.shape[:2], bool)
    border[top:top + 224, left:left + 224] = False
    assert border.sum() == out.shape[0] * out.shape[1] - 224 * 224
    assert (out[border] == fill).all()
    # the single-image path writes into this thread's canvas: same bytes, border filled once, crop overwritten
    first = q.reused(crop)
    np.testing.assert_array_equal(first, out)
    flipped = np.ascontiguousarray(crop[::-1])
    assert q.reused(flipped) is first
    np.testing.assert_array_equal(first, q(flipped))
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(230, 260), (224, 224)]]
    [(_, batch)] = batched_tensors(imgs, spec, q)  # the batch path writes the same canvas into each slot
    for slot, im in zip(batch, imgs):
        np.testing.assert_array_equal(slot, q(fit_to_spec(im, spec)))


def test_quantized_batches_are_written_per_slot():
    from aligngemini_sdk.quantized_input import InputQuantizer, QuantizedInput
    from aligngemini_sdk.runtimes.base import batched_tensors

    spec = InputSpec(height=64, width=64, crop="center", resize="none")
    q = InputQuantizer(spec, QuantizedInput(0.02, 110))
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(80, 90), (64, 64), (100, 70)]]
    [(idx, batch)] = batched_tensors(imgs, spec, q)
    assert idx == [0, 1, 2] and batch.shape == (3, 64, 64, 3) and batch.dtype == np.uint8
    for i, im in enumerate(imgs):
        np.testing.assert_array_equal(batch[i], q(fit_to_spec(im, spec)))


def test_truncation_check_is_not_fooled_by_an_embedded_thumbnail():
    """A complete thumbnail inside APP1 (its own scan and end marker) does not make a cut main image complete."""
    from aligngemini_sdk.image import _jpeg_complete

    thumb = b"\xff\xd8\xff\xda\x00\x02thumbscan\xff\xd9"
    app1 = b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb
    head = b"\xff\xd8" + app1 + b"\xff\xda\x00\x02" + b"\x12\x34" * 50
    assert not _jpeg_complete(head)                    # the main scan has no end marker
    assert _jpeg_complete(head + b"\xff\xd9")
    assert _jpeg_complete(head + b"\xff\xd9" + b"\x00" * 10)  # trailing padding after the end marker
    assert not _jpeg_complete(b"\xff\xd8\xff\xd9")     # no scan at all
