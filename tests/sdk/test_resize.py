"""sdk/resize.py: a downscale is the exact area average, an upscale bicubic, both in integers -- the same bytes on
every CPU."""

from __future__ import annotations

import hashlib
import inspect
import json
import os

import cv2
import numpy as np
import pytest

from aligngemini_sdk import resize as resize_module
from aligngemini_sdk.image import load_image
from aligngemini_sdk.resize import area, area_numpy, cubic, cubic_numpy, resize
from tests.conftest import (
    EMULATED_BASELINE_CPU,
    SHARED,
    needs_emulated_arm64,
    needs_emulated_avx2,
    on_emulated_arm64,
    on_emulated_x86,
)

#: CI sets it: a machine that should have built the C shim must not pass by skipping its tests
REQUIRED = os.environ.get("ALIGNGEMINI_REQUIRE_NATIVE_RESIZE") == "1"
NOT_BUILT = pytest.mark.skipif(not resize_module.status().available and not REQUIRED,
                               reason=f"the C resize is not built here: {resize_module.status().detail}")
#: every definition test runs on both implementations of each resize: the C shim and the numpy reference
IMPLEMENTATIONS = pytest.mark.parametrize("shrink", [pytest.param(area, id="C", marks=NOT_BUILT),
                                                     pytest.param(area_numpy, id="numpy")])
GROWTHS = pytest.mark.parametrize("grow", [pytest.param(cubic, id="C", marks=NOT_BUILT),
                                           pytest.param(cubic_numpy, id="numpy")])


def _overlaps(length: int, n: int) -> np.ndarray:
    """(n, length) integer weights: how much of input pixel i output j covers, in units of 1/n pixel."""
    m = np.zeros((n, length), np.int64)
    for j in range(n):
        for i in range(length):
            m[j, i] = max(0, min((j + 1) * length, (i + 1) * n) - max(j * length, i * n))
    return m


def reference(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """The definition, computed another way: dense integer weight matrices, then the mean rounded half up."""
    h, w = img.shape[:2]
    x = img.reshape(h, w, -1).astype(np.int64)
    sums = np.einsum("jh,hwc,kw->jkc", _overlaps(h, height), x, _overlaps(w, width))
    return ((2 * sums + h * w) // (2 * h * w)).astype(np.uint8).reshape(height, width, *img.shape[2:])


@IMPLEMENTATIONS
@pytest.mark.parametrize("shape,out", [((7, 9, 3), (3, 4)), ((50, 37, 3), (13, 37)), ((31, 29, 3), (7, 5)),
                                       ((300, 200, 3), (224, 160)), ((97, 103), (10, 11)), ((64, 64, 3), (64, 64)),
                                       ((40, 30, 4), (9, 7)), ((5, 6, 2), (1, 1)), ((23, 17, 5), (4, 3))])
def test_area_is_the_exact_area_mean_rounded_half_up(shrink, shape, out):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(shrink(img, *out), reference(img, *out))


@IMPLEMENTATIONS
def test_a_tie_rounds_up_and_an_integer_factor_is_the_block_mean(shrink):
    assert shrink(np.array([[0, 1]], np.uint8), 1, 1)[0, 0] == 1
    img = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    blocks = img.reshape(4, 2, 4, 3, 3).astype(np.int64).sum(axis=(1, 3))
    np.testing.assert_array_equal(shrink(img, 4, 4), (2 * blocks + 6) // 12)


@pytest.mark.parametrize("seed", range(4))
def test_the_c_shim_and_numpy_give_the_same_bytes_on_random_shapes_and_views(seed):
    """Random sizes, channel counts and ratios (shrinking by area, growing or shrinking bicubic), and views numpy does
    not lay out contiguously (a crop, a flipped image, a channel subset, one row broadcast down the image, every other
    row and third column): the C path reads rows in place or from a copy, never different bytes."""
    if not resize_module.status().available:
        assert not REQUIRED, resize_module.status().detail
        pytest.skip(resize_module.status().detail)
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w, c = int(rng.integers(1, 400)), int(rng.integers(1, 400)), int(rng.integers(1, 5))
        img = rng.integers(0, 256, (h + 4, w + 4, c + 1), dtype=np.uint8)
        views = (img[2:h + 2, 1:w + 1, :c], img[::-1, :, :c], img[:h, :w, 1:], img[:h, :w, 0],
                 np.broadcast_to(img[:1, :w, :c], (h, w, c)), img[::2, ::3, :c])
        for v in views:
            size = int(rng.integers(1, v.shape[0] + 1)), int(rng.integers(1, v.shape[1] + 1))
            np.testing.assert_array_equal(area(v, *size), area_numpy(v, *size))
            size = int(rng.integers(1, 3 * v.shape[0] + 2)), int(rng.integers(1, 3 * v.shape[1] + 2))
            np.testing.assert_array_equal(cubic(v, *size), cubic_numpy(v, *size))


@pytest.mark.parametrize("shape,out", [((97, 103, 3), (10, 11)), ((3, 5000, 3), (2, 224)), ((999, 7), (224, 7))])
def test_bands_of_output_rows_give_the_same_bytes_as_one(monkeypatch, shape, out):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    monkeypatch.setattr(resize_module, "BAND_BYTES", 1)  # one output row per band
    np.testing.assert_array_equal(area_numpy(img, *out), reference(img, *out))


@IMPLEMENTATIONS
@pytest.mark.parametrize("rows", [8_500_000, 17_000_000])
def test_a_very_tall_image_takes_64_bit_row_sums_without_overflow(shrink, rows):
    """255 * (h + 2n) > 2^31: numpy's row sums take 64 bits; above 2^32 the C shim's 32-bit row sums would not hold
    it, so ``area`` hands such an image to numpy."""
    tall = np.full((rows, 1), 255, np.uint8)
    tall[::2] = 0
    assert (shrink(tall, 2, 1) == 128).all()


@IMPLEMENTATIONS
@pytest.mark.parametrize("shape", [(2400, 2000, 3), (2400, 3600, 3)])
def test_large_inputs_take_64_bit_sums_without_overflow(shrink, shape):
    """2 * 255 * h * w > 2^31: the rounding needs 64 bits; at 2400 x 3600 a row's running sum does too (255 * h * w >
    2^31), at 2400 x 2000 it fits in 32."""
    full = np.full(shape, 255, np.uint8)
    assert (shrink(full, 224, 224) == 255).all()
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    d = shrink(img, 224, 224).astype(int) - cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
    assert np.abs(d).max() <= 1


@pytest.mark.shared_data
def test_on_a_photo_it_agrees_with_opencvs_area_filter_to_one_level_on_almost_every_pixel():
    rgb = load_image(SHARED / "images/real/kodak24/testsets__Kodak24__kodim01.png").rgb
    d = area(rgb, 224, 224).astype(int) - cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
    assert np.abs(d).max() <= 1 and (d != 0).mean() < 1e-3


@IMPLEMENTATIONS
@GROWTHS
def test_it_refuses_what_it_does_not_define(shrink, grow):
    img = np.zeros((10, 10, 3), np.uint8)
    for bad, size in ((img, (11, 5)), (img, (0, 5)), (img.astype(np.float32), (5, 5)), (np.zeros(10, np.uint8), (1, 1)),
                      (np.zeros((4, 4, 0), np.uint8), (2, 2))):
        with pytest.raises(ValueError):
            shrink(bad, *size)
    for bad, size in ((img, (0, 5)), (img.astype(np.float32), (20, 20)), (np.zeros(10, np.uint8), (20, 20)),
                      (np.zeros((4, 4, 0), np.uint8), (8, 8))):
        with pytest.raises(ValueError):
            grow(bad, *size)


def test_resize_is_area_when_no_side_grows_cubic_when_the_area_does_not_shrink_else_area_then_cubic():
    img = np.random.default_rng(2).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize(img, 150, 100), area(img, 150, 100))
    np.testing.assert_array_equal(resize(img, 400, 300), cubic(img, 400, 300))
    np.testing.assert_array_equal(resize(img, 320, 190), cubic(img, 320, 190))  # one side shrinks, the area grows
    strip = img[:100]  # 100 x 200 -> 150 x 80: one side grows, the area shrinks
    np.testing.assert_array_equal(resize(strip, 150, 80), cubic(area(strip, 100, 80), 150, 80))
    np.testing.assert_array_equal(resize(img[:, :50], 100, 120), cubic(area(img[:, :50], 100, 50), 100, 120))


def test_a_strip_is_the_area_mean_across_and_bicubic_along():
    """Each column of a 3 x 6000 strip shrunk to 60 columns is the area mean of 100 input columns; grown to 224 rows
    it is the bicubic of those 3 values (exactly, since the shrink leaves the rows alone)."""
    strip = np.random.default_rng(5).integers(0, 256, (3, 6000, 3), dtype=np.uint8)
    means = reference(strip, 3, 60)
    np.testing.assert_array_equal(resize(strip, 224, 60), cubic(means, 224, 60))
    assert (resize(np.full((3, 6000), 77, np.uint8), 224, 224) == 77).all()


@GROWTHS
def test_cubic_keeps_an_image_at_its_size_and_a_flat_one_flat(grow):
    img = np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(grow(img, 40, 30), img)
    assert (grow(np.full((9, 7), 200, np.uint8), 50, 60) == 200).all()
    assert (grow(np.full((1, 1, 4), 255, np.uint8), 224, 224) == 255).all()  # the overshoot is clipped, not wrapped


@pytest.mark.shared_data
@GROWTHS
def test_cubic_is_within_one_level_of_opencvs_bicubic_on_a_photo(grow):
    rgb = load_image(SHARED / "images/real/kodak24/testsets__Kodak24__kodim01.png").rgb[:150, :180]
    d = grow(rgb, 224, 224).astype(int) - cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_CUBIC)
    assert np.abs(d).max() <= 1 and (d != 0).mean() < 0.05


#: the two wild images whose whole-image view differed most between x86 and ARM with OpenCV's INTER_AREA
#: (benchmarks/reports/emulated_cpu/, session 17): a camera JPEG and a generated PNG
ARM_SENSITIVE = ("wild/images/real/Li-Chongyi__Zero-DCE/Zero-DCE_code__data__test_data__DICM__03.jpg",
                 "wild/images/fake/jamez-bondos__awesome-gpt4o-images/gpt-image-1__examples__tryon-output.png")


def digests(rgb):
    """The shrunk whole image, a 150 x 180 corner grown (OpenCV's INTER_CUBIC differed between x86 and ARM too) and a
    100-row strip of it, which grows in height and shrinks in width (OpenCV's INTER_AREA before session 19)."""
    views = (area(rgb, 224, 224), cubic(rgb[:150, :180], 224, 224), resize(rgb[:100], 224, 224))
    return [hashlib.sha256(a.tobytes()).hexdigest() for a in views]


#: the same function, run by the emulated CPU
DIGEST = ("import hashlib, json, sys\nfrom aligngemini_sdk.image import load_image\n"
          "from aligngemini_sdk.resize import area, cubic, resize\n" + inspect.getsource(digests)
          + "print(json.dumps([digests(load_image(p).rgb) for p in sys.argv[1:]]))\n")


@pytest.mark.shared_data
@needs_emulated_arm64
def test_an_emulated_arm_cpu_gets_the_same_bytes():
    paths = [str(SHARED / p) for p in ARM_SENSITIVE]
    here = [digests(load_image(p).rgb) for p in paths]
    assert json.loads(on_emulated_arm64("-c", DIGEST, *paths).stdout) == here


#: every path of resize() on random images, 1-4 channels, printed with whether the shim ran and the CPU had AVX2
LOOPS = ("import hashlib, json\nimport numpy as np\nfrom numpy._core._multiarray_umath import __cpu_features__\n"
         "from aligngemini_sdk import resize\nrng = np.random.default_rng(3)\n"
         "shapes = [(375, 500, 3), (150, 180, 3), (100, 900, 3), (32, 32, 1), (61, 47, 4), (700, 90, 2)]\n"
         "ims = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]\n"
         "out = [hashlib.sha256(resize.resize(im, 224, 224).tobytes()).hexdigest() for im in ims]\n"
         "print(json.dumps([resize.status().available, __cpu_features__['AVX2'], out]))\n")


@needs_emulated_avx2
def test_the_shims_baseline_loops_give_the_bytes_of_its_avx2_loops():
    """The shim's integer loops are compiled for AVX2 and for the baseline, chosen when it loads: a CPU without AVX
    (emulated) runs the baseline ones, and they give the same bytes as this CPU's."""
    import subprocess
    import sys

    if not resize_module.status().available:
        pytest.skip("the C shim is not built here (no compiler): nothing to compare")
    here = json.loads(subprocess.run([sys.executable, "-c", LOOPS], capture_output=True, text=True,
                                     check=True).stdout)
    there = json.loads(on_emulated_x86(EMULATED_BASELINE_CPU, "-c", LOOPS).stdout)
    assert there[:2] == [True, False] and there[2] == here[2]


def test_numpy_only_keeps_the_c_shim_out_and_gives_the_same_bytes(monkeypatch):
    img = np.random.default_rng(7).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    expected = resize(img, 40, 30), resize(img[:20], 60, 50)

    def no_shim():
        raise AssertionError("the C shim was asked for")

    monkeypatch.setattr(resize_module, "_native", no_shim)
    with resize_module.numpy_only():
        got = resize(img, 40, 30), resize(img[:20], 60, 50)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    with pytest.raises(AssertionError, match="C shim"):  # and only within it
        resize(img, 40, 30)
