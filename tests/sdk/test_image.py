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


def test_image_wrapper_reports_size():
    im = Image.from_array(np.zeros((5, 7), np.uint8), "GRAY")
    assert (im.height, im.width) == (5, 7)
