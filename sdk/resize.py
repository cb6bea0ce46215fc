"""Resizing an image to a model's input: the same bytes on every CPU.

A downscale (both sides shrink or stay) is an **exact area average**: each output pixel is the mean of the input
area it covers, fractional edge pixels weighted by the fraction they cover, rounded half up -- computed in integers
only, so no SIMD path, summation order or FMA can change a byte. OpenCV's ``INTER_AREA`` computes the same average
in floating point with CPU-specific kernels: on the 397 ``wild/`` images its x86 and emulated-ARM builds gave
outputs 16-50 apart (sums of uint8) on the images that differed most, which moved the default's whole-image score by
up to 9.6e-4 (``benchmarks/reports/emulated_cpu/``). :func:`area` is at most one level from x86 ``INTER_AREA``:
on 531 of the 1,086 shared images other than CIFAKE's some pixels of the 224 view differ, a median 230 of 50,176
(``benchmarks/reports/resize_agreement/``; ``tests/sdk/test_resize.py`` holds a Kodak photo to one level on under
0.1 % of its values).

How: with an input length ``L`` and an output length ``n``, output ``j`` covers ``[j L, (j + 1) L)`` in units of
``1/n`` input pixel. With ``c = x // n`` and ``r = x % n`` at those boundaries, its area sum (scaled by ``n``) is
``n * sum(p[c_j:c_{j+1}]) + r_{j+1} p[c_{j+1}] - r_j p[c_j]``: whole-pixel sums plus two edge terms, rows first,
then columns; the mean is the sum over ``H * W`` in the end. Two implementations compute these same integers: a C
shim (``sdk/_native/resize.c``, built at install time, called through ctypes, which releases the GIL) and
:func:`area_numpy` (band by band of output rows: rows by one reduction per segment, columns from a running sum per
channel), which runs where no C compiler was available and is the reference the shim is tested against. Being
integer arithmetic, neither depends on the compiler or the CPU.

An image that must grow in a side keeps the SDK's earlier rule, bicubic when its area does not shrink -- now
:func:`cubic`, in integers (OpenCV's ``INTER_CUBIC`` finishes in float32 SIMD: its x86 and emulated-ARM bytes
differed on every image tried). A strip that grows in one side while its area shrinks (e.g. 100 x 1000 to 224 x 224)
is shrunk by :func:`area` along the side that shrinks, then grown by :func:`cubic` along the other (OpenCV's
``INTER_AREA``, floating point, did it before session 19; no image of ``../shared/data`` as served has that shape,
54 web versions the training recipe makes do). So every path is integer arithmetic: no resize depends on the CPU.
:func:`cubic`'s passes also run in the C shim (its taps are numpy's either way), with :func:`cubic_numpy` as the
reference; :func:`numpy_only` keeps the shim out, for measuring the two.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from aligngemini_sdk.native import NativeStatus, load_shim

#: the most memory one band's running column sums (int64) may take; a band is at least one output row
BAND_BYTES = 1 << 24
#: bicubic's free parameter and the fixed-point precision of its weights, as OpenCV's INTER_CUBIC
CUBIC_A = -0.75
CUBIC_BITS = 11
#: the C shim's limits (its sums stay exact below them); other images take the numpy path
MAX_NATIVE_SIDE = 1 << 24


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``rgb`` (H, W, C uint8) at ``height`` x ``width``: :func:`area` when no side grows, :func:`cubic` when the
    area does not shrink, else (one side grows, the area shrinks) :func:`area` along the side that shrinks and then
    :func:`cubic` along the one that grows."""
    h, w = rgb.shape[:2]
    if h >= height and w >= width:
        return area(rgb, height, width)
    if h * w <= height * width:
        return cubic(rgb, height, width)
    return cubic(area(rgb, min(h, height), min(w, width)), height, width)


def cubic(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic interpolation (Keys, a = -0.75; pixel centres aligned; edges replicated) of a uint8 (H, W) or
    (H, W, C) image, in integers: OpenCV's ``INTER_CUBIC`` design (float32 taps rounded to 11-bit fixed point, an
    integer horizontal pass), but the vertical pass in integers too, where OpenCV's SIMD kernels use float32 (its x86
    and ARM builds then differ; this is within one level of x86's). The passes run in the C shim where it was built,
    else in :func:`cubic_numpy`; the taps are numpy's either way, so both give the same bytes."""
    h, w, ch = _check_cubic(rgb, height, width)
    lib = None if _numpy_only else _native()[0]
    img = rgb.reshape(h, w, ch)
    if lib is None or ch > 4 or max(h, w, height, width) >= MAX_NATIVE_SIDE:
        return cubic_numpy(rgb, height, width)
    img = _rows_in_place(img)
    (xi, xc), (yi, yc) = _cubic_taps(w, width), _cubic_taps(h, height)  # (n, 4) int64 and int32, C-contiguous
    out = np.empty((height, width, ch), np.uint8)
    code = lib.agr_cubic(img.ctypes.data, h, w, ch, img.strides[0], out.ctypes.data, height, width, xi.ctypes.data,
                         xc.ctypes.data, yi.ctypes.data, yc.ctypes.data, CUBIC_BITS)
    _check_native(code, "cubic", img.shape, height, width)
    return out.reshape(height, width, *rgb.shape[2:])


def cubic_numpy(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`cubic` in numpy, the reference the C shim is held to."""
    h, w, ch = _check_cubic(rgb, height, width)
    img = rgb.reshape(h, w * ch)  # channels interleaved along the row: every pass runs over long contiguous rows
    (xi, xc), (yi, yc) = _cubic_taps(w, width), _cubic_taps(h, height)
    cols = (xi.T[:, :, None] * ch + np.arange(ch)).reshape(4, width * ch)  # tap k's source column per output value
    cw = np.repeat(xc.T, ch, axis=1)  # (4, width * ch) int32
    # int32 holds it: the taps' absolute weights sum to at most 1.375, so |value| <= 255 * (1.375 * 2^11)^2 < 2.03e9
    rows = img[:, cols[0]] * cw[0]  # (h, width * ch), x 2^11
    for k in range(1, 4):
        rows += img[:, cols[k]] * cw[k]
    out = rows[yi[:, 0]] * yc[:, 0, None]  # (height, width * ch), x 2^22
    for k in range(1, 4):
        out += rows[yi[:, k]] * yc[:, k, None]
    out += 1 << (2 * CUBIC_BITS - 1)
    out >>= 2 * CUBIC_BITS
    return np.clip(out, 0, 255).astype(np.uint8).reshape(height, width, *rgb.shape[2:])


def _check_cubic(rgb: np.ndarray, height: int, width: int) -> tuple[int, int, int]:
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or rgb.size == 0 or min(height, width) <= 0:
        raise ValueError(f"cubic() takes a uint8 (H, W[, C]) image and a positive size, got {rgb.dtype} {rgb.shape}")
    return rgb.shape[0], rgb.shape[1], 1 if rgb.ndim == 2 else rgb.shape[2]


@functools.lru_cache(maxsize=64)
def _cubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output position its four input indices (clamped) and integer weights (sum ~ 2^CUBIC_BITS), computed in
    float32 one operation at a time (numpy fuses nothing), so every CPU gets the same integers. Cached per sizes
    (the views' sizes repeat) and read-only."""
    f32 = np.float32
    pos = ((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5).astype(f32)
    start = np.floor(pos)
    x = pos - start
    a, one = f32(CUBIC_A), f32(1)
    x1, y = x + one, one - x
    c0 = ((a * x1 - f32(5) * a) * x1 + f32(8) * a) * x1 - f32(4) * a
    c1 = ((a + f32(2)) * x - (a + f32(3))) * x * x + one
    c2 = ((a + f32(2)) * y - (a + f32(3))) * y * y + one
    weights = np.stack([c0, c1, c2, one - c0 - c1 - c2], 1)
    idx = np.ascontiguousarray(np.clip(start.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1))
    taps = np.ascontiguousarray(np.rint(weights * f32(1 << CUBIC_BITS)).astype(np.int32))
    idx.flags.writeable = taps.flags.writeable = False
    return idx, taps


def area(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Exact area average of a uint8 (H, W) or (H, W, C) image down to ``height`` x ``width`` (each at most the
    input's), rounded half up: by the C shim where it was built (``sdk/_native/resize.c``), else by
    :func:`area_numpy`; both compute the same integers, so they give the same bytes (``tests/sdk/test_resize.py``)."""
    h, w = _check_area(rgb, height, width)
    if (height, width) == (h, w):
        return rgb.copy()
    lib = None if _numpy_only else _native()[0]
    img = rgb.reshape(h, w, -1)
    if lib is None or max(h, w) >= MAX_NATIVE_SIDE or img.shape[2] > 4 or 255 * (h + 2 * height) > 2**32 - 1:
        return area_numpy(rgb, height, width)
    img = _rows_in_place(img)
    out = np.empty((height, width, img.shape[2]), np.uint8)
    code = lib.agr_area(img.ctypes.data, h, w, img.shape[2], img.strides[0], out.ctypes.data, height, width)
    _check_native(code, "area", img.shape, height, width)
    return out.reshape(height, width, *rgb.shape[2:])


def _rows_in_place(img: np.ndarray) -> np.ndarray:
    """``img`` (H, W, C) if the shim can read its rows where they are (each row's pixels contiguous, rows apart by
    at least a row), else a contiguous copy (a flipped, broadcast or strided view)."""
    _, w, ch = img.shape
    if img.strides[1:] != (ch, 1) or img.strides[0] < w * ch:
        return np.ascontiguousarray(img)
    return img


def _check_native(code: int, what: str, shape: tuple[int, ...], height: int, width: int) -> None:
    if code == 2:
        raise MemoryError(f"{what}(): no memory for the sums of a {shape} image")
    if code != 0:  # the callers refuse what the shim refuses; reaching this is a bug, not bad input
        raise AssertionError(f"resize.c refused {what} of {shape} -> {height}x{width} (code {code})")


def area_numpy(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`area` in numpy, the reference the C shim is held to. Output rows are made in bands whose running
    column sums stay under BAND_BYTES, so a long strip (224 x 200,000) costs no more memory than a square photo."""
    h, w = _check_area(rgb, height, width)
    if (height, width) == (h, w):
        return rgb.copy()
    img = rgb.reshape(h, w, -1)
    rows, cols = _bounds(h, height), _bounds(w, width)
    band = max(1, BAND_BYTES // (8 * (w + 1) * img.shape[2]))
    out = np.empty((height, width, img.shape[2]), np.uint8)
    total = h * w  # each output's weights, in (1/height x 1/width) units, sum to h * w
    for j0 in range(0, height, band):
        j1 = min(height, j0 + band)
        part = _row_sums(img, rows[0][j0:j1 + 1], rows[1][j0:j1 + 1], height)
        sums = _column_sums(part, *cols, width, bound=255 * (h + 2 * height))  # _row_sums' bound
        out[j0:j1] = (2 * sums + total) // (2 * total)
    return out.reshape(height, width, *rgb.shape[2:])


def _check_area(rgb: np.ndarray, height: int, width: int) -> tuple[int, int]:
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or rgb.size == 0:
        raise ValueError(f"area() takes a uint8 (H, W[, C]) image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if not (0 < height <= h and 0 < width <= w):
        raise ValueError(f"area() only shrinks: {h}x{w} -> {height}x{width}")
    return h, w


@functools.lru_cache(maxsize=1)
def _native() -> tuple[Any, NativeStatus]:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return load_shim("aligngemini_sdk._resize", "the C resize", "needs a C compiler; numpy computes the same bytes, "
                     "slower", "C, integers",
                     {"agr_area": [ptr, i64, i64, i64, i64, ptr, i64, i64],
                      "agr_cubic": [ptr, i64, i64, i64, i64, ptr, i64, i64, ptr, ptr, ptr, ptr, ctypes.c_int]})


def status() -> NativeStatus:
    """Is the C resize available? (For ``aligngemini sys`` and the benchmarks.)"""
    return _native()[1]


_numpy_only = False


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """Within it, :func:`area` and :func:`cubic` take the numpy path even where the C shim is built: what an install
    without a C compiler runs (the same bytes). Process-wide, for measuring the two (``benchmarks/``), not for
    serving."""
    global _numpy_only
    before, _numpy_only = _numpy_only, True
    try:
        yield
    finally:
        _numpy_only = before


def _bounds(length: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the ``n + 1`` output boundaries fall, in units of ``1/n`` input pixel: (pixel index, remainder)."""
    x = np.arange(n + 1, dtype=np.int64) * length
    return x // n, x % n


def _row_sums(img: np.ndarray, c: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """(len(c) - 1, W, C) area sums of rows between consecutive boundaries ``(c, r)``, scaled by ``n``: one
    reduction per segment of whole rows (no copy of the image in a wider type), plus the two edge rows' shares.
    int32 unless a value could pass it: a segment holds at most H / n + 1 rows, so a value is at most 255 (H + 2n)."""
    dtype = np.int32 if 255 * (img.shape[0] + 2 * n) < 2**31 else np.int64
    out = np.empty((len(c) - 1, *img.shape[1:]), dtype)
    for j in range(len(c) - 1):
        np.add.reduce(img[c[j]:c[j + 1]], axis=0, dtype=dtype, out=out[j])
    out *= n
    edge = img[np.minimum(c, img.shape[0] - 1)].astype(dtype)
    edge *= r[:, None, None].astype(dtype)
    out += edge[1:] - edge[:-1]
    return out


def _column_sums(part: np.ndarray, c: np.ndarray, r: np.ndarray, n: int, bound: int) -> np.ndarray:
    """(rows, n, C) int64 area sums of ``part``'s columns between consecutive boundaries, scaled by ``n``: from a
    running sum along each row and channel (the channel axis moved out of the way, so the sum runs over long
    strides, not over triples), plus the two edge columns' shares. ``bound``: the largest value ``part`` can hold;
    the running sum is int32 while ``bound`` x its length fits."""
    k, w, ch = part.shape
    dtype = np.int32 if bound * w < 2**31 else np.int64
    by_channel = part.transpose(0, 2, 1)  # (rows, C, W), a view
    run = np.zeros((k, ch, w + 1), dtype)
    np.cumsum(by_channel, axis=2, dtype=dtype, out=run[:, :, 1:])
    out = (run[:, :, c[1:]] - run[:, :, c[:-1]]).astype(np.int64)
    out *= n
    edge = by_channel[:, :, np.minimum(c, w - 1)].astype(np.int64)
    edge *= r[None, None, :]
    out += edge[:, :, 1:] - edge[:, :, :-1]
    return out.transpose(0, 2, 1)
