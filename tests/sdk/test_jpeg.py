"""The JPEG fast paths (libjpeg-turbo's partial decoding) give OpenCV's exact bytes or are not used.

Specification: on every shared JPEG, TurboJPEG's full decode equals OpenCV's (EXIF orientation applied), and a
region decode equals the same rectangle sliced from OpenCV's full decode -- for centre crops of several sizes, all
eight EXIF orientations, progressive and restart-marker files, 4:4:4 / 4:2:2 / 4:2:0 / grayscale, edges and corners
(partial MCUs included); files it cannot promise that for (CMYK, corrupt data) and rectangles outside the image
return None so the caller decodes in full.
"""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest

from aligngemini_sdk import jpeg
from tests.conftest import SHARED

pytestmark = pytest.mark.skipif(
    not jpeg.status().available and os.environ.get("ALIGNGEMINI_REQUIRE_NATIVE_JPEG") != "1",
    reason=f"JPEG fast path unavailable here: {jpeg.status().detail}")

CROPS = [(224, 224), (336, 336), (225, 223), (17, 301)]


def opencv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)


def centre(h: int, w: int, img: np.ndarray) -> jpeg.Rect:
    return jpeg.Rect((img.shape[0] - h) // 2, (img.shape[1] - w) // 2, h, w)


def assert_regions_match(data: bytes, crops: list[tuple[int, int]] = CROPS) -> int:
    """Every crop that the fast path serves equals OpenCV's; returns how many it served."""
    ref, served = opencv(data), 0
    for h, w in crops:
        if ref.shape[0] < h or ref.shape[1] < w:
            continue
        r = centre(h, w, ref)
        got = jpeg.decode_region(data, r)
        if got is not None:
            np.testing.assert_array_equal(got, ref[r.top:r.bottom, r.left:r.right])
            served += 1
    return served


def photo(size: tuple[int, int] = (701, 523), seed: int = 0) -> np.ndarray:
    """A noisy, asymmetric test image (so a wrong flip, rotation or chroma edge shows)."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 251], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, **kw: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def with_orientation(rgb: np.ndarray, orientation: int, **kw: object) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(rgb, exif=exif.tobytes(), **kw)


@pytest.mark.shared_data
def test_every_shared_jpeg_full_and_regions_match_opencv() -> None:
    paths = sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert len(paths) > 1000
    jpegs = served = 0
    for p in paths:
        data = p.read_bytes()
        if data[:2] != b"\xff\xd8":  # PNGs named .jpg exist in the shared data
            continue
        jpegs += 1
        full = jpeg.decode_full(data)
        assert full is not None, p
        np.testing.assert_array_equal(full, opencv(data), err_msg=str(p))
        served += assert_regions_match(data)
    assert jpegs > 1000 and served > jpegs  # 2532 region decodes of 1749 files here (small files: few crops fit)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("subsampling", [0, 1, 2])  # PIL: 4:4:4, 4:2:2, 4:2:0
def test_all_orientations_and_subsamplings(orientation: int, subsampling: int) -> None:
    data = with_orientation(photo(), orientation, subsampling=subsampling, quality=90)
    assert jpeg.exif_orientation(data) == orientation
    np.testing.assert_array_equal(jpeg.decode_full(data), opencv(data))
    assert assert_regions_match(data, [*CROPS, (400, 90), (91, 500)]) >= 5


@pytest.mark.parametrize("kw", [{"progressive": True}, {"restart_marker_blocks": 3}, {"restart_marker_rows": 1},
                                {"progressive": True, "subsampling": 0}])
def test_progressive_and_restart_marker_files(kw: dict[str, object]) -> None:
    data = with_orientation(photo((1203, 811), seed=1), 6, quality=85, **kw)
    assert (b"\xff\xdd" in data) == any(k.startswith("restart") for k in kw)  # DRI: restart markers present
    assert (b"\xff\xc2" in data) == bool(kw.get("progressive"))               # SOF2: progressive
    np.testing.assert_array_equal(jpeg.decode_full(data), opencv(data))
    assert assert_regions_match(data) == len(CROPS)


def test_grayscale_jpeg_matches() -> None:
    gray = cv2.cvtColor(photo(), cv2.COLOR_RGB2GRAY)
    _ok, enc = cv2.imencode(".jpg", gray)
    data = enc.tobytes()
    np.testing.assert_array_equal(jpeg.decode_full(data), opencv(data))
    assert assert_regions_match(data) >= 3


def test_cmyk_is_left_to_opencv() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(photo()).convert("CMYK").save(buf, format="JPEG")
    data = buf.getvalue()
    assert jpeg.header(data) is None
    assert jpeg.decode_full(data) is None
    assert jpeg.decode_region(data, jpeg.Rect(10, 10, 50, 50)) is None


def test_corrupt_scan_data_falls_back() -> None:
    data = bytearray(encode(photo(), quality=90))
    sos = data.rfind(b"\xff\xda")
    for k in range(sos + 400, len(data) - 400, 97):  # garbage in the entropy-coded data (no markers)
        data[k] = 0x00 if data[k] == 0xFF else data[k] ^ 0x5A
    assert jpeg.decode_region(bytes(data), jpeg.Rect(200, 200, 100, 100)) is None
    assert jpeg.decode_full(bytes(data)) is None


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_edges_and_corners_match_and_outside_is_refused(subsampling: int) -> None:
    data = encode(photo((701, 523)), subsampling=subsampling)  # 701 = 43 MCUs of 16 + 13 pixels: a partial MCU
    ref = opencv(data)
    for r in (jpeg.Rect(0, 0, 10, 10), jpeg.Rect(0, 680, 20, 21), jpeg.Rect(500, 0, 23, 701),
              jpeg.Rect(513, 690, 10, 11), jpeg.Rect(0, 0, 523, 701)):
        np.testing.assert_array_equal(jpeg.decode_region(data, r), ref[r.top:r.bottom, r.left:r.right])
    for outside in (jpeg.Rect(-1, 0, 10, 10), jpeg.Rect(0, 0, 524, 10), jpeg.Rect(0, 695, 5, 7), jpeg.Rect(5, 5, 0, 3)):
        assert jpeg.decode_region(data, outside) is None


def test_max_pixels_refuses_before_decoding() -> None:
    data = encode(photo())
    assert jpeg.header(data, max_pixels=701 * 523 - 1) is None
    assert jpeg.header(data, max_pixels=701 * 523) is not None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_rect_inverts_orient(orientation: int) -> None:
    stored = np.arange(7 * 5 * 3, dtype=np.uint8).reshape(7, 5, 3)  # 3 channels: OpenCV's orientation path
    shown = jpeg.orient(stored, orientation)
    r = jpeg.Rect(1, 2, 3, 2)
    s = jpeg.stored_rect(r, orientation, width=5, height=7)
    np.testing.assert_array_equal(jpeg.orient(stored[s.top:s.bottom, s.left:s.right], orientation),
                                  shown[r.top:r.bottom, r.left:r.right])
