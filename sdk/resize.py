"""Resizing an image to a model's input: the same bytes on every CPU.

A downscale (both sides shrink or stay) is an **exact area average**: each output pixel is the mean of the input
area it covers, fractional edge pixels weighted by the fraction they cover, rounded half up -- computed in integers
only, so no SIMD path, summation order or FMA can change a byte. OpenCV's ``INTER_AREA`` computes the same average
in floating point with CPU-specific kernels: on the 397 ``wild/`` images its x86 and emulated-ARM builds gave
outputs 16-50 apart (sums of uint8) on the images that differed most, which moved the default's whole-image score by
up to 9.6e-4 (``benchmarks/reports/emulated_cpu/``). :func:`area` is at most one level from x86 ``INTER_AREA``, on
0.1 % of the values on average (at most 1.2 %) over 271 shared photos (``tests/sdk/test_resize.py`` holds a Kodak
photo to one level on under 0.1 %).

How: with an input length ``L`` and an output length ``n``, output ``j`` covers ``[j L, (j + 1) L)`` in units of
``1/n`` input pixel. With ``c = x // n`` and ``r = x % n`` at those boundaries, its area sum (scaled by ``n``) is
``n * sum(p[c_j:c_{j+1}]) + r_{j+1} p[c_{j+1}] - r_j p[c_j]``: whole-pixel sums plus two edge terms. One pass per
axis (rows, then columns on the transposed result), in int32, or int64 where a sum could pass 2^31;
the mean is the sum over ``H * W`` in the end.

An image that must grow in a side keeps the SDK's earlier OpenCV rule: ``INTER_CUBIC`` (fixed-point integer
arithmetic for uint8), or ``INTER_AREA`` when it still loses area overall (one side under the target, e.g. a
1000 x 100 strip). That last case is the one left to OpenCV's floating point, and to its CPU.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``rgb`` (H, W, C uint8) at ``height`` x ``width``: :func:`area` when no side grows."""
    h, w = rgb.shape[:2]
    if h >= height and w >= width:
        return area(rgb, height, width)
    interp = cv2.INTER_AREA if h * w > height * width else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=interp)


def area(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Exact area average of a uint8 (H, W) or (H, W, C) image down to ``height`` x ``width`` (each at most the
    input's), rounded half up."""
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3):
        raise ValueError(f"area() takes a uint8 (H, W[, C]) image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if not (0 < height <= h and 0 < width <= w):
        raise ValueError(f"area() only shrinks: {h}x{w} -> {height}x{width}")
    if (height, width) == (h, w):
        return rgb.copy()
    rest = rgb.shape[2:]
    rows = _axis_sums(rgb.reshape(h, -1), height, np.int32)  # (height, W * C), scaled by height
    cols = rows.reshape(height, w, -1).transpose(1, 0, 2).reshape(w, -1)
    wide = np.int32 if 2 * 255 * (h + height) * (w + width) < 2**31 else np.int64  # bounds every sum below
    sums = _axis_sums(np.ascontiguousarray(cols), width, wide)  # (width, height * C), scaled by height * width
    total = h * w  # each output's weights, in (1/height x 1/width) units, sum to h * w
    out = (2 * sums + total) // (2 * total)
    return np.ascontiguousarray(out.reshape(width, height, -1).transpose(1, 0, 2).astype(np.uint8).reshape(
        height, width, *rest))


def _axis_sums(a: np.ndarray, n: int, dtype: type[np.signedinteger]) -> np.ndarray:
    """Area sums along axis 0 of a 2-D array of length ``L >= n`` into ``n`` outputs, each scaled by ``n``."""
    length = a.shape[0]
    x = np.arange(n + 1, dtype=np.int64) * length
    c, r = x // n, x % n
    out = _segment_sums(a, c, dtype)
    out *= n
    edge = a[np.minimum(c, length - 1)].astype(dtype) * r[:, None].astype(dtype)
    out += edge[1:] - edge[:-1]
    return out


def _segment_sums(a: np.ndarray, bounds: np.ndarray, dtype: type[np.signedinteger]) -> np.ndarray:
    """Sums of rows ``bounds[j]:bounds[j + 1]``, one reduction per segment: no copy of the image in a wider type
    (measured faster than a running sum or ``np.add.reduceat`` from 0.2 to 48 megapixels)."""
    out = np.empty((len(bounds) - 1, a.shape[1]), dtype)
    for j in range(len(bounds) - 1):
        np.add.reduce(a[bounds[j]:bounds[j + 1]], axis=0, dtype=dtype, out=out[j])
    return out
