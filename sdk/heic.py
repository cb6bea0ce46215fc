"""HEIC/HEIF photos: the default format of iPhones and of many Android cameras, which OpenCV cannot decode.

Decoded by libheif (HEVC through libde265) via ``pillow-heif``, an optional extra (``pip install
'aligngemini-sdk[heic]'``): without it a HEIC file raises :class:`~aligngemini_sdk.errors.MissingExtraError`
naming the extra, never a generic decode failure. The wheel bundles LGPL libheif/libde265 and the GPL x265 encoder:
vendors who ship firmware decide whether to include it.

Checks, in order: the ISOBMFF ``ftyp`` brands say HEIC (:func:`kind`); the largest declared image extent
(``ispe``) is within ``max_pixels`` (:mod:`aligngemini_sdk.image`, before libheif sees the file); libheif's own
parse of the primary image's size, with its transformations, is within ``max_pixels`` before any pixel is decoded;
then the primary image is decoded with its rotation and mirroring applied (HEIF's ``irot``/``imir`` properties,
which the HEIF standard makes authoritative over an EXIF orientation tag), 10/12-bit images reduced to 8 bits.
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.device import cpu_info, decode_threads
from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError
from aligngemini_sdk.extras import available, require
from aligngemini_sdk.jpeg import Rect

#: ``ftyp`` brands of HEVC-coded HEIF (still images and sequences)
HEIC_BRANDS = frozenset((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"))
#: ``ftyp`` brands of AV1-coded HEIF
AVIF_BRANDS = frozenset((b"avif", b"avis"))
#: generic HEIF brands: the codec is not said; OpenCV's AVIF path is tried, as before HEIC support
GENERIC_BRANDS = frozenset((b"mif1", b"msf1"))
#: pillow-heif's 8-bit modes -> the colour order :func:`aligngemini_sdk.image.Image.from_array` takes
_MODES = {"RGB": "RGB", "RGBA": "RGBA", "L": "GRAY", "LA": "GRAY"}


def status() -> str:
    """One line for ``aligngemini sys``: whether HEIC decodes here, and whether grid tiles can be decoded alone."""
    if not available("pillow_heif"):
        return "not installed (pip install 'aligngemini-sdk[heic]')"
    import pillow_heif

    tiles = "on" if _libheif() is not None else "off (no libheif tile API found: full decodes)"
    return f"pillow-heif {pillow_heif.__version__}, libheif {pillow_heif.libheif_version()}; tiles under crops {tiles}"


def brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISOBMFF ``ftyp`` box at the start of ``data`` (empty when none)."""
    if data[4:8] != b"ftyp":
        return set()
    size = int.from_bytes(data[:4], "big")
    end = min(len(data), size if 16 <= size <= 4096 else 16)
    return {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}


def kind(data: bytes) -> str | None:
    """"avif", "heic" or None, from the ``ftyp`` brands (AV1 wins when a file claims both)."""
    found = brands(data)
    if found & AVIF_BRANDS:
        return "avif"
    if found & HEIC_BRANDS:
        return "heic"
    if data[8:12] in GENERIC_BRANDS:
        return "avif"
    return None


@contextmanager
def _libheif_errors(name: str) -> Iterator[None]:
    """libheif's failures, as pillow-heif raises them, as one typed error naming the input. ``LookupError``: pillow-heif
    indexes its list of images without checking it (a file whose images libheif all refused gave an IndexError)."""
    try:
        yield
    except ImageDecodeError:
        raise
    except (RuntimeError, ValueError, OSError, SyntaxError, EOFError, LookupError) as exc:
        raise ImageDecodeError(name, f"HEIC decoder: {str(exc).strip() or type(exc).__name__}") from None


def decode(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, str]:
    """The primary image's pixels (H, W, C) uint8 as displayed, and their colour order ("RGB", "RGBA", "GRAY")."""
    pillow_heif = require("pillow_heif", "Decoding HEIC/HEIF photos")
    with _libheif_errors(name):
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)  # parses; decodes nothing yet
        if len(heif) == 0:  # every image refused (e.g. no decoder configuration): nothing to decode
            raise ImageDecodeError(name, "HEIC decoder: no decodable image in the file")
        (w, h), mode = heif.size, str(heif.mode)
    if w * h > max_pixels:
        raise ImageTooLargeError(name, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                                       "(decompression-bomb guard; raise max_pixels to allow it)")
    with _libheif_errors(name):
        pixels = np.asarray(heif)
    if mode not in _MODES or pixels.dtype != np.uint8:
        raise ImageDecodeError(name, f"unsupported HEIC pixel format {mode} ({pixels.dtype})")
    if pixels.ndim == 3 and mode in ("L", "LA"):
        pixels = pixels[..., 0]
    return pixels, _MODES[mode]


# -- grid tiles under a crop -------------------------------------------------------------------------------------
# Phones write HEIC as a grid of independent HEVC tiles (512 x 512 on iPhones). A branch that reads a centre crop
# needs the few tiles under it; libheif (>= 1.19) decodes one tile at a time. pillow-heif does not expose that, so
# the tile API is called with ctypes on the libheif that pillow-heif bundles (the same library that decodes in
# full), and only where the result is the full decode's pixels, byte for byte (tests/sdk/test_heic.py): 8-bit
# images without alpha. Anything else (no grid, alpha, HDR, an older libheif, any libheif error) returns None and
# the caller decodes in full.

_COLORSPACE_RGB, _CHROMA_INTERLEAVED_RGB, _CHANNEL_INTERLEAVED = 1, 10, 10


class _HeifError(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


class _Tiling(ctypes.Structure):  # struct heif_image_tiling, version 1
    _fields_ = [("version", ctypes.c_int), ("num_columns", ctypes.c_uint32), ("num_rows", ctypes.c_uint32),
                ("tile_width", ctypes.c_uint32), ("tile_height", ctypes.c_uint32),
                ("image_width", ctypes.c_uint32), ("image_height", ctypes.c_uint32),
                ("top_offset", ctypes.c_uint32), ("left_offset", ctypes.c_uint32),
                ("number_of_extra_dimensions", ctypes.c_uint8), ("extra_dimension_size", ctypes.c_uint32 * 8)]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "heif_context_alloc": (ctypes.c_void_p, []),
    "heif_context_free": (None, [ctypes.c_void_p]),
    "heif_context_read_from_memory": (_HeifError, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]),
    "heif_context_get_primary_image_handle": (_HeifError, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]),
    "heif_image_handle_release": (None, [ctypes.c_void_p]),
    "heif_image_handle_has_alpha_channel": (ctypes.c_int, [ctypes.c_void_p]),
    "heif_image_handle_get_luma_bits_per_pixel": (ctypes.c_int, [ctypes.c_void_p]),
    "heif_image_handle_get_chroma_bits_per_pixel": (ctypes.c_int, [ctypes.c_void_p]),
    "heif_image_handle_get_image_tiling": (_HeifError, [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Tiling)]),
    "heif_image_handle_decode_image_tile": (_HeifError, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                                         ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                                         ctypes.c_uint32, ctypes.c_uint32]),
    "heif_image_handle_get_item_id": (ctypes.c_uint32, [ctypes.c_void_p]),
    "heif_item_get_transformation_properties": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32,
                                                               ctypes.POINTER(ctypes.c_uint32), ctypes.c_int]),
    "heif_image_get_primary_width": (ctypes.c_int, [ctypes.c_void_p]),
    "heif_image_get_primary_height": (ctypes.c_int, [ctypes.c_void_p]),
    "heif_image_get_plane_readonly": (ctypes.POINTER(ctypes.c_uint8), [ctypes.c_void_p, ctypes.c_int,
                                                                       ctypes.POINTER(ctypes.c_int)]),
    "heif_image_release": (None, [ctypes.c_void_p]),
    "heif_image_handle_get_grid_image_tile_id": (_HeifError, [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32,
                                                              ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "heif_item_get_item_data": (_HeifError, [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int),
                                             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]),
}


@lru_cache(maxsize=1)
def _libheif() -> ctypes.CDLL | None:
    """pillow-heif's bundled libheif with the tile API declared, or None (no pillow-heif, or a libheif without tiles)."""
    try:
        import pillow_heif  # noqa: F401  (initialises libheif and its decoder plugins)
    except ImportError:
        return None
    spec = importlib.util.find_spec("pillow_heif")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.parent.glob("pillow_heif.libs/libheif*.so*"))
    if not found:
        return None
    try:
        lib = ctypes.CDLL(str(found[-1]))
        for fn, (restype, argtypes) in _SIGNATURES.items():
            getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
    except (OSError, AttributeError):
        return None
    return lib


class _Opened:
    """A libheif context and its primary image handle, released together."""

    def __init__(self, lib: ctypes.CDLL, data: bytes) -> None:
        self.lib, self.ctx, self.handle = lib, lib.heif_context_alloc(), ctypes.c_void_p()
        self.ok = bool(self.ctx) and self._check(lib.heif_context_read_from_memory(self.ctx, data, len(data), None)) \
            and self._check(lib.heif_context_get_primary_image_handle(self.ctx, ctypes.byref(self.handle)))

    @staticmethod
    def _check(err: _HeifError) -> bool:
        return err.code == 0

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle:
            self.lib.heif_image_handle_release(self.handle)
        if self.ctx:
            self.lib.heif_context_free(self.ctx)

    def transformed(self) -> bool:
        """Whether the primary image carries rotation, mirroring or a clean-aperture crop (``irot``/``imir``/``clap``)."""
        props = (ctypes.c_uint32 * 16)()
        item = self.lib.heif_image_handle_get_item_id(self.handle)
        return self.lib.heif_item_get_transformation_properties(self.ctx, item, props, 16) != 0

    def tiling(self) -> _Tiling | None:
        """The image's tiling when the tile path matches the full decode byte for byte: a grid of more than one tile,
        8 bits, no alpha, and no transformation (tiles of rotated or mirrored grids were measured to land elsewhere
        than the full decode puts them; those decode in full)."""
        lib, t = self.lib, _Tiling()
        if (not self.ok or self.transformed() or lib.heif_image_handle_has_alpha_channel(self.handle)
                or lib.heif_image_handle_get_luma_bits_per_pixel(self.handle) != 8
                or lib.heif_image_handle_get_chroma_bits_per_pixel(self.handle) != 8
                or not self._check(lib.heif_image_handle_get_image_tiling(self.handle, 1, ctypes.byref(t)))
                or t.num_columns * t.num_rows < 2 or t.number_of_extra_dimensions):
            return None
        return t

    def unreadable_tile(self) -> tuple[int, int] | None:
        """The first tile (column, row) of a grid image whose coded data is not in the file (a truncated or damaged
        file), or None. libheif's full decode, as pillow-heif calls it, fills such tiles in silently. Only sizes are
        asked for (libheif checks the extents against the file; nothing is copied), once per distinct tile item."""
        lib, t = self.lib, _Tiling()
        if not self.ok or not self._check(lib.heif_image_handle_get_image_tiling(self.handle, 0, ctypes.byref(t))):
            return None
        if t.num_columns * t.num_rows < 2:
            return None
        seen: set[int] = set()
        for ty in range(t.num_rows):
            for tx in range(t.num_columns):
                item, size = ctypes.c_uint32(), ctypes.c_size_t()
                if not self._check(lib.heif_image_handle_get_grid_image_tile_id(self.handle, 0, tx, ty,
                                                                                 ctypes.byref(item))):
                    return tx, ty
                if item.value in seen:
                    continue
                seen.add(item.value)
                if not self._check(lib.heif_item_get_item_data(self.ctx, item.value, None, None, ctypes.byref(size))) \
                        or size.value == 0:
                    return tx, ty
        return None

    def paste_tile(self, out: np.ndarray, rect: Rect, t: _Tiling, tx: int, ty: int) -> bool:
        """Decode tile (tx, ty) and copy its part of ``rect`` into ``out``."""
        lib, img, stride = self.lib, ctypes.c_void_p(), ctypes.c_int()
        if not self._check(lib.heif_image_handle_decode_image_tile(self.handle, ctypes.byref(img), _COLORSPACE_RGB,
                                                                    _CHROMA_INTERLEAVED_RGB, None, tx, ty)):
            return False
        try:
            w, h = lib.heif_image_get_primary_width(img), lib.heif_image_get_primary_height(img)
            plane = lib.heif_image_get_plane_readonly(img, _CHANNEL_INTERLEAVED, ctypes.byref(stride))
            if not plane or w <= 0 or h <= 0 or stride.value < 3 * w:
                return False
            tile = np.ctypeslib.as_array(plane, shape=(h, stride.value))[:, :3 * w].reshape(h, w, 3)
            x0, y0 = tx * t.tile_width - t.left_offset, ty * t.tile_height - t.top_offset
            top, left = max(rect.top, y0), max(rect.left, x0)
            bottom, right = min(rect.bottom, y0 + h), min(rect.right, x0 + w)
            if bottom > top and right > left:
                out[top - rect.top:bottom - rect.top, left - rect.left:right - rect.left] = \
                    tile[top - y0:bottom - y0, left - x0:right - x0]
            return True
        finally:
            lib.heif_image_release(img)


@dataclass(frozen=True)
class Grid:
    """A grid HEIC the tile path serves byte-identically (:meth:`_Opened.tiling`), parsed once: its displayed size,
    and :meth:`decode` for any rectangle of it."""

    data: bytes
    tiling: _Tiling

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        return int(self.tiling.image_width), int(self.tiling.image_height)

    def decode(self, rect: Rect) -> np.ndarray | None:
        """Only ``rect`` (displayed coordinates), from the tiles under it: the full decode's pixels there, RGB uint8;
        None outside the image or on any libheif error (the caller decodes in full). Tiles decode in parallel, one
        libheif context per worker (ctypes releases the GIL; each tile fills its own part of the output)."""
        t, (w, h) = self.tiling, self.size
        if rect.top < 0 or rect.left < 0 or rect.bottom > h or rect.right > w:
            return None
        out = np.empty((rect.height, rect.width, 3), np.uint8)
        first_x, first_y = (rect.left + t.left_offset) // t.tile_width, (rect.top + t.top_offset) // t.tile_height
        last_x = min((rect.right - 1 + t.left_offset) // t.tile_width, t.num_columns - 1)
        last_y = min((rect.bottom - 1 + t.top_offset) // t.tile_height, t.num_rows - 1)
        tiles = [(tx, ty) for ty in range(first_y, last_y + 1) for tx in range(first_x, last_x + 1)]
        lib = _libheif()
        assert lib is not None  # a Grid exists only where libheif's tile API was found

        def some_tiles(part: list[tuple[int, int]]) -> bool:
            with _Opened(lib, self.data) as own:
                return own.ok and all(own.paste_tile(out, rect, t, tx, ty) for tx, ty in part)

        workers = max(1, min(len(tiles), int(cpu_info()["usable_cores"])))
        parts = [tiles[i::workers] for i in range(workers)]
        done = [some_tiles(tiles)] if workers == 1 else list(decode_threads().map(some_tiles, parts))
        return out if all(done) else None


def grid(data: bytes, max_pixels: int) -> Grid | None:
    """The file as a :class:`Grid` when the tile path can serve it (a grid of 8-bit tiles without alpha or
    transformations, within ``max_pixels``); None otherwise (no pillow-heif, or libheif without the tile API)."""
    lib = _libheif()
    if lib is None:
        return None
    with _Opened(lib, data) as opened:
        t = opened.tiling()
    return None if t is None or t.image_width * t.image_height > max_pixels else Grid(data, t)


def unreadable_tile(data: bytes) -> tuple[int, int] | None:
    """The first tile (column, row) of a grid HEIC whose data is not in the file (truncated or damaged), or None
    (not a grid, complete, or no pillow-heif/libheif to ask)."""
    lib = _libheif()
    if lib is None:
        return None
    with _Opened(lib, data) as opened:
        return opened.unreadable_tile()
