"""Every kind of input image decodes correctly into RGB uint8, or raises a typed error naming the input."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError, InputShapeError
from aligngemini_sdk.image import Image, load_image, sniff_dimensions
from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import center_crop, fit_to_spec, normalize
from tests.conftest import KODAK

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

PHOTO = KODAK / "testsets__Kodak24__kodim01.png"


def photo_rgb() -> np.ndarray:
    return np.asarray(PILImage.open(PHOTO).convert("RGB"))


def encode(img: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_png_path_decodes_to_rgb_exactly():
    img = load_image(PHOTO)
    assert img.rgb.dtype == np.uint8 and img.rgb.shape[2] == 3
    np.testing.assert_array_equal(img.rgb, photo_rgb())
    assert img.name == str(PHOTO)


def test_bytes_and_pil_and_array_inputs_agree():
    ref = photo_rgb()
    np.testing.assert_array_equal(load_image(PHOTO.read_bytes()).rgb, ref)
    np.testing.assert_array_equal(load_image(PILImage.open(PHOTO)).rgb, ref)
    np.testing.assert_array_equal(load_image(ref, color_order="RGB").rgb, ref)
    np.testing.assert_array_equal(load_image(np.ascontiguousarray(ref[:, :, ::-1]), color_order="BGR").rgb, ref)


def test_array_needs_explicit_colour_order():
    with pytest.raises(InputShapeError, match="color_order"):
        load_image(photo_rgb())


@pytest.mark.parametrize(("arr", "order"), [
    (np.zeros((10, 10, 3), np.float32), "RGB"),
    (np.zeros((10, 10, 5), np.uint8), "RGB"),
    (np.zeros((10, 10, 4), np.uint8), "RGB"),
    (np.zeros((0, 10, 3), np.uint8), "RGB"),
    (np.zeros((2, 10, 10, 3), np.uint8), "RGB"),
])
def test_wrong_shapes_and_dtypes(arr, order):
    with pytest.raises(InputShapeError):
        load_image(arr, color_order=order)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty") as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_garbage_bytes(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageDecodeError):
        load_image(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path)


def test_truncated_jpeg_is_refused_not_grey_filled():
    data = encode(PILImage.fromarray(photo_rgb()), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_truncated_png():
    data = PHOTO.read_bytes()
    with pytest.raises(ImageDecodeError):
        load_image(data[: len(data) // 3])


def _png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_decompression_bomb_refused_from_header_without_decoding():
    bomb = _png_header_only(100_000, 100_000)
    assert sniff_dimensions(bomb) == (100_000, 100_000)
    with pytest.raises(ImageTooLargeError, match="exceeds"):
        load_image(bomb)


def test_pixel_limit_is_configurable():
    with pytest.raises(ImageTooLargeError):
        load_image(PHOTO, max_pixels=1000)
    assert load_image(PHOTO, max_pixels=10**9).width > 0


def test_sixteen_bit_png_is_scaled_to_eight_bit(tmp_path):
    ref = photo_rgb()
    p = tmp_path / "16.png"
    cv2.imwrite(str(p), ref[:, :, ::-1].astype(np.uint16) * 257)
    np.testing.assert_array_equal(load_image(p).rgb, ref)


def test_grayscale_becomes_three_equal_channels():
    gray = PILImage.fromarray(photo_rgb()).convert("L")
    out = load_image(encode(gray, "PNG")).rgb
    assert out.shape[2] == 3
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(gray))
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    np.testing.assert_array_equal(load_image(np.asarray(gray)).rgb[:, :, 1], np.asarray(gray))


def test_rgba_png_keeps_colour():
    rgba = PILImage.fromarray(photo_rgb()).convert("RGBA")
    np.testing.assert_array_equal(load_image(encode(rgba, "PNG")).rgb, photo_rgb())


def test_palette_png_matches_its_rgb_rendering():
    pal = PILImage.fromarray(photo_rgb()).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=64)
    np.testing.assert_array_equal(load_image(encode(pal, "PNG")).rgb, np.asarray(pal.convert("RGB")))


def test_cmyk_jpeg_decodes_to_rgb():
    cmyk = PILImage.fromarray(photo_rgb()).convert("CMYK")
    out = load_image(encode(cmyk, "JPEG", quality=95)).rgb.astype(int)
    ref = np.asarray(cmyk.convert("RGB")).astype(int)
    assert out.shape == ref.shape
    assert np.abs(out - ref).mean() < 6.0


def test_animated_gif_gives_first_frame():
    a = PILImage.new("RGB", (40, 30), (255, 0, 0))
    b = PILImage.new("RGB", (40, 30), (0, 0, 255))
    data = encode(a, "GIF", save_all=True, append_images=[b], duration=100, loop=0)
    out = load_image(data).rgb
    assert out.shape == (30, 40, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_exif_orientation_is_applied():
    img = PILImage.fromarray(photo_rgb()[:, :300])  # not square: rotation is visible in the shape
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_image(encode(img, "JPEG", quality=95, exif=exif.tobytes())).rgb
    from PIL import ImageOps

    ref = np.asarray(ImageOps.exif_transpose(PILImage.open(io.BytesIO(encode(img, "JPEG", quality=95,
                                                                              exif=exif.tobytes())))))
    assert out.shape == ref.shape == (img.width, img.height, 3)
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 2.0


def test_webp_and_bmp_dimensions_sniffed():
    img = PILImage.fromarray(photo_rgb()[:100, :120])
    for fmt in ("WEBP", "BMP", "GIF", "JPEG"):
        assert sniff_dimensions(encode(img, fmt)) == (120, 100), fmt


def test_center_crop_never_upsamples_small_images():
    small = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    out = center_crop(small, 64, 64)
    assert out.shape == (64, 64, 3)
    # the original pixels appear unchanged in the middle (reflect padding around them)
    assert any(np.array_equal(out[r:r + 20, c:c + 30], small) for r in range(45) for c in range(35))


def test_fit_and_normalize_follow_the_spec():
    spec = InputSpec(height=336, width=336, crop="center", resize="none", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    rgb = photo_rgb()
    fitted = fit_to_spec(rgb, spec)
    h, w = rgb.shape[:2]
    np.testing.assert_array_equal(fitted, rgb[(h - 336) // 2:(h - 336) // 2 + 336, (w - 336) // 2:(w - 336) // 2 + 336])
    t = normalize(fitted, spec)
    assert t.shape == (3, 336, 336) and t.dtype == np.float32
    assert t[0, 0, 0] == pytest.approx(fitted[0, 0, 0] / 255 * 2 - 1, abs=1e-6)
    bgr = normalize(fitted, InputSpec(**{**spec.__dict__, "color_order": "BGR", "layout": "NHWC"}))
    assert bgr.shape == (336, 336, 3) and bgr[0, 0, 0] == pytest.approx(t[2, 0, 0])


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fast_normalisation_equals_the_textbook_formula(order, layout):
    """The fused in-place path must give exactly what ``(x / scale - mean) / std`` gives, per channel."""
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    spec = InputSpec(height=224, width=224, crop="center", resize="none", mean=mean, std=std,
                     color_order=order, layout=layout)
    fitted = fit_to_spec(photo_rgb(), spec)
    x = fitted.astype(np.float64) / 255.0
    if order == "BGR":
        x, m, s = x[:, :, ::-1], np.array(mean[::-1]), np.array(std[::-1])
    else:
        m, s = np.array(mean), np.array(std)
    ref = (x - m) / s
    if layout == "NCHW":
        ref = ref.transpose(2, 0, 1)
    np.testing.assert_allclose(normalize(fitted, spec), ref, atol=2e-6)


def test_batches_are_normalised_in_place_per_slot():
    from aligngemini_sdk.preprocess import preprocess
    from aligngemini_sdk.runtimes.base import batched_tensors

    spec = InputSpec(height=64, width=64, crop="center", resize="none")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(80, 90), (64, 64), (100, 70)]]
    [(idx, batch)] = batched_tensors(imgs, spec)
    assert idx == [0, 1, 2] and batch.shape == (3, 3, 64, 64)
    for i, im in enumerate(imgs):
        np.testing.assert_array_equal(batch[i], preprocess(im, spec))
    full = InputSpec(height=0, width=0, crop="none")
    groups = batched_tensors(imgs, full)
    assert sorted(tuple(g[0]) for g in groups) == [(0,), (1,), (2,)]


def test_full_image_spec_caps_huge_inputs():
    spec = InputSpec(height=0, width=0, crop="none", max_side=256)
    assert fit_to_spec(np.zeros((1000, 700, 3), np.uint8), spec).shape == (256, 256, 3)
    assert fit_to_spec(np.zeros((100, 70, 3), np.uint8), spec).shape == (100, 70, 3)


def test_image_wrapper_reports_size():
    im = Image.from_array(np.zeros((5, 7), np.uint8), "GRAY")
    assert (im.height, im.width) == (5, 7)


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
