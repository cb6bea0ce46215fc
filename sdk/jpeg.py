"""JPEG fast paths on libjpeg-turbo's own partial-decoding API: decode only a rectangle, the whole image, or the
whole image at a reduced DCT scale (for branches whose manifest declares ``input.jpeg_downscale = "dct"``).

Both give exactly the bytes the general decoder (:func:`aligngemini_sdk.image.decode_bytes`, OpenCV) gives, EXIF
orientation included, or are not used at all: every function here returns ``None`` when it cannot promise that,
and the caller decodes with OpenCV. ``tests/sdk/test_jpeg.py`` checks byte identity on every shared JPEG, all eight
orientations, progressive, restart-marker, 4:4:4/4:2:2/4:2:0 and grayscale files.

How a region is decoded (``sdk/_native/jpeg_region.c``, a ~100-line C shim loaded with ctypes): the region, in
displayed (EXIF-oriented) coordinates, is mapped to the stored image and widened by one MCU on every side (so
chroma upsampling at its edges sees the same neighbours as in a full decode; clamped at the image's edges, where a
full decode replicates the same pixels); ``jpeg_skip_scanlines`` passes the rows above it (entropy-decoded, not
transformed), ``jpeg_crop_scanline`` limits each row's inverse DCT, upsampling and colour conversion to its
columns, and decoding stops after its last row: the rows below are never read. The result is sliced and oriented.
CMYK/YCCK and 12-bit files, and any libjpeg warning (corrupt data), take OpenCV's full decode instead.

Why a shim and not a Python binding (measured in ``benchmarks/jpeg_decode.py``): the maintained bindings that run
on the libjpeg-turbo this platform ships (2.1) only *scale* (Pillow's draft mode, simplejpeg, OpenCV's reduced
modes) or crop *losslessly* (PyTurboJPEG's ``crop``: every coefficient of the image is entropy-decoded and stored,
then re-encoded: 31 ms for a 12 MP photo, 186 ms at 50 MP where its full decode takes 172), while this path decodes a
224 crop of the same photos in 12 and 38 ms (AMD EPYC Zen 2). The shim is built at install time against the system's libjpeg-turbo
(``libjpeg62-turbo-dev`` / ``libjpeg-turbo8-dev``); where it could not be built, :func:`status` says so and JPEGs
take OpenCV's path.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from aligngemini_sdk.native import NativeStatus, load_shim

ORIENTATIONS = range(1, 9)
_MSG_LEN = 512


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle: rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width


@functools.lru_cache(maxsize=1)
def _native() -> tuple[Any, NativeStatus]:
    u32, ulong, buf, ptr = ctypes.c_uint, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_void_p
    return load_shim("aligngemini_sdk._jpeg_region", "the JPEG shim", "needs a C compiler and libjpeg-turbo's headers: "
                     "libjpeg62-turbo-dev or libjpeg-turbo8-dev", "libjpeg-turbo partial decoding",
                     {"agj_header": [buf, ulong, *[ctypes.POINTER(u32)] * 4, ctypes.POINTER(ctypes.c_int)],
                      "agj_decode_region": [buf, ulong, u32, u32, u32, u32, ptr, ulong, buf, ulong],
                      "agj_decode_scaled": [buf, ulong, u32, u32, u32, ptr, ulong, buf, ulong]})


def status() -> NativeStatus:
    """Is the JPEG fast path available? (For ``aligngemini sys`` and the benchmarks.)"""
    return _native()[1]


# -- EXIF orientation, read the way OpenCV reads it -------------------------------------------------------
def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG's first ``Exif`` APP1 segment; 1 when absent or unreadable."""
    i, n = 2, min(len(data), 1 << 20)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xDA, 0xD9):
            return 1
        size = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[i + 10:i + 2 + size])
        i += 2 + size
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    try:
        end = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(end + "I", tiff[4:8])
        (count,) = struct.unpack(end + "H", tiff[ifd:ifd + 2])
        for k in range(count):
            p = ifd + 2 + 12 * k
            tag, typ = struct.unpack(end + "HH", tiff[p:p + 4])
            if tag == 0x0112 and typ == 3:
                (value,) = struct.unpack(end + "H", tiff[p + 8:p + 10])
                return value if value in ORIENTATIONS else 1
    except (KeyError, struct.error):
        return 1
    return 1


#: orientation -> (transpose first, then flip rows, flip columns): the displayed image as index operations
_ORIENT = {1: (False, 1, 1), 2: (False, 1, -1), 3: (False, -1, -1), 4: (False, -1, 1),
           5: (True, 1, 1), 6: (True, 1, -1), 7: (True, -1, -1), 8: (True, -1, 1)}
_CV2_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
               4: lambda a: cv2.flip(a, 0), 5: cv2.transpose, 6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
               7: lambda a: cv2.flip(cv2.transpose(a), -1),
               8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}


def orient(stored: np.ndarray, orientation: int) -> np.ndarray:
    """The displayed image of a stored (H, W, 3) array under an EXIF orientation, as OpenCV applies it (OpenCV's
    blocked transpose: a numpy transpose copy of a 12 MP image costs several times more)."""
    if orientation == 1:
        return stored
    if stored.ndim == 3 and stored.shape[2] == 3:
        return _CV2_ORIENT[orientation](np.ascontiguousarray(stored))
    transpose, rows, cols = _ORIENT[orientation]
    t = stored.swapaxes(0, 1) if transpose else stored
    return t[::rows, ::cols]


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) as displayed: orientations 5-8 swap the axes."""
    return (height, width) if orientation >= 5 else (width, height)


def stored_rect(rect: Rect, orientation: int, width: int, height: int) -> Rect:
    """The rectangle of the stored image (``width`` x ``height``) that :func:`orient` turns into ``rect``."""
    transpose, rows, cols = _ORIENT[orientation]
    dh, dw = (width, height) if transpose else (height, width)

    def to_stored(r: int, c: int) -> tuple[int, int]:
        rr, cc = (dh - 1 - r if rows < 0 else r), (dw - 1 - c if cols < 0 else c)
        return (cc, rr) if transpose else (rr, cc)

    (r0, c0), (r1, c1) = to_stored(rect.top, rect.left), to_stored(rect.bottom - 1, rect.right - 1)
    top, left = min(r0, r1), min(c0, c1)
    return Rect(top, left, max(r0, r1) - top + 1, max(c0, c1) - left + 1)


# -- decoding ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    mcu: tuple[int, int]
    orientation: int


def header(data: bytes, max_pixels: int | None = None) -> JpegHeader | None:
    """The stored size, MCU size and orientation when the fast path can decode this file exactly (and, given
    ``max_pixels``, its size is within it); else None."""
    lib = _native()[0]
    if lib is None:
        return None
    w, h, mw, mh, ok = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_int()
    if lib.agj_header(data, len(data), ctypes.byref(w), ctypes.byref(h), ctypes.byref(mw), ctypes.byref(mh),
                      ctypes.byref(ok)) != 0 or not ok.value:
        return None
    if w.value == 0 or h.value == 0 or (max_pixels is not None and w.value * h.value > max_pixels):
        return None
    return JpegHeader(w.value, h.value, (mw.value, mh.value), exif_orientation(data))


def decode_full(data: bytes, max_pixels: int | None = None) -> np.ndarray | None:
    """The whole image, EXIF-oriented, RGB uint8; None when this path cannot promise OpenCV's bytes."""
    head = header(data, max_pixels)
    if head is None:
        return None
    pixels = _decode_stored(data, Rect(0, 0, head.height, head.width))
    return None if pixels is None else np.ascontiguousarray(orient(pixels, head.orientation))


def decode_region(data: bytes, rect: Rect, max_pixels: int | None = None) -> np.ndarray | None:
    """Only ``rect`` (displayed coordinates) of the image, RGB uint8, byte-identical to slicing the full decode;
    None when the fast path cannot promise that (the caller decodes in full)."""
    head = header(data, max_pixels)
    if head is None:
        return None
    w, h = displayed_size(head.width, head.height, head.orientation)
    if rect.top < 0 or rect.left < 0 or rect.bottom > h or rect.right > w or rect.height <= 0 or rect.width <= 0:
        return None
    s = stored_rect(rect, head.orientation, head.width, head.height)
    cut = with_margin(s, head)
    pixels = _decode_stored(data, cut)
    if pixels is None:
        return None
    part = pixels[s.top - cut.top:s.bottom - cut.top, s.left - cut.left:s.right - cut.left]
    return np.ascontiguousarray(orient(part, head.orientation))


#: the DCT-domain reductions libjpeg and OpenCV (``IMREAD_REDUCED_*``) share
REDUCTIONS = (8, 4, 2)
_CV2_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def scaled_size(width: int, height: int, denom: int) -> tuple[int, int]:
    """libjpeg's output size at 1/denom scale: each side rounded up."""
    return -(-width // denom), -(-height // denom)


def decode_scaled(data: bytes, denom: int, max_pixels: int | None = None) -> np.ndarray | None:
    """The whole image at 1/``denom`` scale (2, 4 or 8; libjpeg's scaled inverse DCT), EXIF-oriented, RGB uint8:
    the bytes OpenCV's ``IMREAD_REDUCED_COLOR_<denom>`` gives (tested); None when the fast path is unavailable."""
    head = header(data, max_pixels)
    if head is None or denom not in REDUCTIONS:
        return None
    w, h = scaled_size(head.width, head.height, denom)
    out = np.empty((h, w, 3), dtype=np.uint8)
    msg = ctypes.create_string_buffer(_MSG_LEN)
    lib: Any = _native()[0]
    rc = lib.agj_decode_scaled(data, len(data), denom, w, h, out.ctypes.data, out.strides[0], msg, _MSG_LEN)
    return np.ascontiguousarray(orient(out, head.orientation)) if rc == 0 else None


def decode_scaled_opencv(data: bytes, denom: int) -> np.ndarray | None:
    """The same reduction through OpenCV, for machines without the shim."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_REDUCED[denom])
    return None if img is None else np.ascontiguousarray(img[:, :, ::-1])


def with_margin(s: Rect, head: JpegHeader) -> Rect:
    """``s`` widened by one MCU on every side, within the image."""
    mw, mh = head.mcu
    top, left = max(0, s.top - mh), max(0, s.left - mw)
    return Rect(top, left, min(head.height, s.bottom + mh) - top, min(head.width, s.right + mw) - left)


def _decode_stored(data: bytes, r: Rect) -> np.ndarray | None:
    lib = _native()[0]
    out = np.empty((r.height, r.width, 3), dtype=np.uint8)
    msg = ctypes.create_string_buffer(_MSG_LEN)
    rc = lib.agj_decode_region(data, len(data), r.left, r.top, r.width, r.height, out.ctypes.data,
                               out.strides[0], msg, _MSG_LEN)
    return out if rc == 0 else None
