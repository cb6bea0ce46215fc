"""Image input: decode anything a user may pass into canonical RGB ``uint8`` HWC, then preprocess it
exactly as the bundle's :class:`~aligngemini_sdk.manifest.InputSpec` says.

Decoding is the SDK's hostile-input boundary. We read the pixel dimensions from the header *before*
decoding so a decompression bomb is refused without allocating it; detect truncated JPEGs (libjpeg
would silently grey-fill them); apply EXIF orientation; flatten 16-bit, grayscale, palette, CMYK and
alpha images to 8-bit RGB; and take the first frame of animations. Every failure raises a typed
:class:`~aligngemini_sdk.errors.ImageError` that names the input.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import struct
import threading
from dataclasses import dataclass
from typing import Any, Union

import cv2
import numpy as np

from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError, InputShapeError
from aligngemini_sdk.manifest import InputSpec

#: Default decompression-bomb guard: 180 megapixels (above any phone sensor, far below a bomb).
DEFAULT_MAX_PIXELS = 180_000_000
#: Refuse files larger than this before reading them (bytes).
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: A JPEG's frame header (with its size) must appear within this many bytes; APPn segments are <= 64 KiB each.
JPEG_HEADER_SCAN_LIMIT = 16 * 1024 * 1024

#: The formats the SDK decodes: each one's size is read from its header before any pixel is allocated. OpenCV
#: can open more (JPEG 2000, Radiance HDR, PFM, Sun raster); those are refused, since their size is not
#: checked first. File extensions per format: directory runs list exactly these.
FORMATS: dict[str, tuple[str, ...]] = {
    "png": (".png",), "jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"), "gif": (".gif",), "bmp": (".bmp", ".dib"),
    "webp": (".webp",), "tiff": (".tif", ".tiff"), "pnm": (".pbm", ".pgm", ".ppm", ".pnm", ".pam"),
    "avif": (".avif",),
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset(e for exts in FORMATS.values() for e in exts)

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, "Image", Any]


@dataclass(frozen=True)
class Image:
    """A decoded image: RGB ``uint8`` array of shape (H, W, 3), and a name used in errors and reports."""

    rgb: np.ndarray
    name: str = "<image>"

    @classmethod
    def from_array(cls, array: np.ndarray, color_order: str, name: str = "<array>") -> Image:
        """Wrap an array whose colour order is stated explicitly ("RGB", "BGR", "RGBA", "BGRA", "GRAY"), within
        :data:`DEFAULT_MAX_PIXELS`."""
        return cls(_array_to_rgb(array, color_order, name), name)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def load_image(source: ImageLike, *, color_order: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image:
    """Turn a path, encoded bytes, an array (with ``color_order``), a PIL image or an :class:`Image` into
    an :class:`Image`. Raises :class:`ImageError` subclasses on anything unusable."""
    if isinstance(source, Image):
        return source
    if isinstance(source, (str, os.PathLike)):
        label = name or os.fsdecode(source)
        return Image(decode_bytes(read_image_file(source, label), name=label, max_pixels=max_pixels), label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        return Image(decode_bytes(bytes(source), name=label, max_pixels=max_pixels), label)
    if isinstance(source, np.ndarray):
        label = name or "<array>"
        if color_order is None:
            if source.ndim == 2 or (source.ndim == 3 and source.shape[2] == 1):
                color_order = "GRAY"
            else:
                raise InputShapeError(label, "numpy colour images need an explicit color_order "
                                             "('RGB' or 'BGR'; OpenCV arrays are 'BGR')")
        return Image(_array_to_rgb(source, color_order, label, max_pixels), label)
    if hasattr(source, "mode") and hasattr(source, "convert") and hasattr(source, "size"):  # PIL.Image
        return Image(_pil_to_rgb(source, name or "<PIL image>"), name or "<PIL image>")
    raise InputShapeError(name or repr(type(source)), f"unsupported image type {type(source).__name__}")


_OS_REASONS = {errno.ENOENT: "file not found", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.ELOOP: "symbolic link loop", errno.ENAMETOOLONG: "file name too long",
               errno.ENOTDIR: "a component of the path is not a directory", errno.EISDIR: "is a directory"}


def read_image_file(path: str | os.PathLike[str], label: str, limit: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file, at most ``limit``: devices, pipes, sockets and directories are refused
    before they are opened (``/dev/zero`` would read forever, a FIFO would block), and every OS failure is an
    :class:`ImageDecodeError` naming the path."""
    def refuse(exc: OSError) -> ImageDecodeError:
        return ImageDecodeError(label, _OS_REASONS.get(exc.errno or 0, exc.strerror or str(exc)))

    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        raise refuse(exc) if isinstance(exc, OSError) else ImageDecodeError(label, str(exc)) from None
    _check_regular(st, label, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(exc) from None
    with os.fdopen(fd, "rb") as fh:
        _check_regular(os.fstat(fh.fileno()), label, limit)  # the path may have been swapped since stat()
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise refuse(exc) from None
    if len(data) > limit:
        raise ImageTooLargeError(label, f"file grew beyond {limit} bytes while being read")
    return data


def _check_regular(st: os.stat_result, label: str, limit: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ImageDecodeError(label, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageDecodeError(label, "not a regular file (a device, pipe or socket); only files are read")
    if st.st_size > limit:
        raise ImageTooLargeError(label, f"file is {st.st_size} bytes (limit {limit})")


def decode_bytes(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image to RGB uint8 (H, W, 3). Only :data:`FORMATS` are decoded, and only after the
    header's pixel count passed ``max_pixels``."""
    if len(data) == 0:
        raise ImageDecodeError(name, "empty (zero bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError(name, f"unrecognised or unsupported format (supported: {', '.join(FORMATS)})")
    dims = sniff_dimensions(data)
    if dims is None:
        raise ImageDecodeError(name, f"{fmt} header does not declare a readable image size; not decoded")
    w, h = dims
    if w <= 0 or h <= 0:
        raise ImageDecodeError(name, f"header declares an empty image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLargeError(name, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                                       "(decompression-bomb guard; raise max_pixels to allow it)")
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        raise ImageDecodeError(name, "truncated JPEG (no end-of-image marker after the scan data)")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:
        raise ImageDecodeError(name, f"decoder error: {str(exc).strip().splitlines()[-1]}") from None
    if img is None or img.size == 0:
        raise ImageDecodeError(name, "cannot decode (corrupt or truncated data)")
    if img.shape[0] * img.shape[1] > max_pixels:  # a header that understated its size
        raise ImageTooLargeError(name, f"{img.shape[1]}x{img.shape[0]} exceeds the limit of {max_pixels} pixels")
    return _to_uint8(img, name)


def _to_uint8(img: np.ndarray, name: str) -> np.ndarray:
    if img.dtype == np.uint8:
        out = img
    elif img.dtype == np.uint16:
        out = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageDecodeError(name, f"unsupported sample type {img.dtype}")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def _array_to_rgb(array: np.ndarray, color_order: str, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    if not isinstance(color_order, str):
        raise InputShapeError(name, f"color_order must be a string such as 'RGB' or 'BGR', got {color_order!r}")
    order = color_order.upper()
    if not isinstance(array, np.ndarray):
        raise InputShapeError(name, f"expected a numpy array, got {type(array).__name__}")
    if array.ndim >= 2 and int(array.shape[0]) * int(array.shape[1]) > max_pixels:  # before any copy
        raise ImageTooLargeError(name, f"{array.shape[1]}x{array.shape[0]} array exceeds the limit of {max_pixels} "
                                       "pixels")
    if array.dtype not in (np.uint8, np.uint16):
        raise InputShapeError(name, f"array dtype must be uint8 or uint16 (HWC), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        if order not in ("GRAY", "L"):
            raise InputShapeError(name, f"2-D array is grayscale but color_order={color_order!r}")
        rgb = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        want = 4 if order in ("RGBA", "BGRA") else 3
        if order not in ("RGB", "BGR", "RGBA", "BGRA") or array.shape[2] != want:
            raise InputShapeError(name, f"array has {array.shape[2]} channels but color_order={color_order!r}")
        rgb = array[:, :, :3]
        if order.startswith("BGR"):
            rgb = rgb[:, :, ::-1]
    else:
        raise InputShapeError(name, f"expected HWC array with 1, 3 or 4 channels, got shape {array.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputShapeError(name, f"empty array of shape {array.shape}")
    return _to_uint8(np.ascontiguousarray(rgb), name)


def _pil_to_rgb(img: Any, name: str) -> np.ndarray:
    try:
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageDecodeError(name, f"PIL image could not be converted: {exc}") from None


# -- header sniffing (no decoding) ------------------------------------------------------------------
def sniff_format(data: bytes) -> str | None:
    """Which of :data:`FORMATS` the data is, from its magic bytes; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"1234567" and data[2:3].isspace():
        return "pnm"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"mif1", b"msf1"):
        return "avif"
    return None


def sniff_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of any of :data:`FORMATS`; None if the header does not say."""
    fmt = sniff_format(data)
    try:
        if fmt == "png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if fmt == "gif":
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if fmt == "bmp" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if fmt is not None and fmt in _DIMS:
            return _DIMS[fmt](data)
    except (struct.error, ValueError, IndexError):
        return None
    return None


_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_FILL = re.compile(rb"\xff+")


def _jpeg_dims(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments to the frame header, within :data:`JPEG_HEADER_SCAN_LIMIT` bytes. Runs of 0xFF
    fill bytes and the gaps between markers are skipped in C (``bytes.find``, a regex), not byte by byte."""
    i, n = 2, min(len(data), JPEG_HEADER_SCAN_LIMIT)
    while True:
        j = data.find(b"\xff", i, n)
        if j < 0:
            return None
        fill = _FILL.match(data, j, n)
        k = fill.end() if fill else j + 1  # the marker byte after the fill run
        if k + 3 > n:
            return None
        marker = data[k]
        if marker in (0xD8, 0x01, 0x00) or 0xD0 <= marker <= 0xD7:
            i = k + 1
            continue
        if marker in _SOF_MARKERS:
            h, w = struct.unpack(">HH", data[k + 4:k + 8])
            return int(w), int(h)
        if marker == 0xDA:
            return None
        i = k + 1 + int.from_bytes(data[k + 1:k + 3], "big")


def _tiff_dims(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD: the page the decoder reads. BigTIFF too."""
    end = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    off = struct.unpack(end + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    count = struct.unpack(end + ("Q" if big else "H"), data[off:off + (8 if big else 2)])[0]
    entry, start = (20, off + 8) if big else (12, off + 2)
    dims: dict[int, int] = {}
    for e in range(min(int(count), 4096)):
        p = start + e * entry
        tag, typ = struct.unpack(end + "HH", data[p:p + 4])
        if tag in (256, 257):
            value = data[p + (12 if big else 8):p + entry]
            dims[tag] = struct.unpack(end + ("H" if typ == 3 else "I"), value[:2 if typ == 3 else 4])[0]
    return (int(dims[256]), int(dims[257])) if 256 in dims and 257 in dims else None


def _pnm_dims(data: bytes) -> tuple[int, int] | None:
    """Width and height tokens of a PBM/PGM/PPM header (comments skipped), or PAM's WIDTH/HEIGHT lines."""
    head = data[:4096]
    if head[1:2] == b"7":
        w, h = re.search(rb"\bWIDTH\s+(\d+)", head), re.search(rb"\bHEIGHT\s+(\d+)", head)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    tokens = re.sub(rb"#[^\n]*", b" ", head[2:]).split()
    return (int(tokens[0]), int(tokens[1])) if len(tokens) >= 2 else None


def _avif_dims(data: bytes) -> tuple[int, int] | None:
    """The largest image spatial extent (``ispe`` property) declared in the file's first 1 MiB: a grid image
    declares its full size there, tiles and thumbnails their own."""
    head, best, i = data[:1 << 20], None, 0
    while (i := head.find(b"ispe", i)) >= 0:
        w, h = struct.unpack(">II", head[i + 8:i + 16])
        if best is None or w * h > best[0] * best[1]:
            best = (int(w), int(h))
        i += 4
    return best


_DIMS = {"jpeg": _jpeg_dims, "webp": lambda d: _webp_dims(d), "tiff": _tiff_dims, "pnm": _pnm_dims,
         "avif": _avif_dims}


def _jpeg_complete(data: bytes) -> bool:
    """A JPEG is complete when an end-of-image marker follows the last start-of-scan."""
    sos = data.rfind(b"\xff\xda")
    return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0


def _webp_dims(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L":
        b = int.from_bytes(data[21:25], "little")
        return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


# -- preprocessing -------------------------------------------------------------------------------------
def fit_to_spec(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Geometric step: resize (only if the spec says so), then centre-crop; reflect-pad small images.

    Never upsamples unless ``resize`` asks for it, so pixel artifacts reach the model untouched.
    """
    img = rgb
    if spec.resize == "exact" and spec.fixed_size:
        interp = cv2.INTER_AREA if img.shape[0] * img.shape[1] > spec.height * spec.width else cv2.INTER_CUBIC
        return cv2.resize(img, (spec.width, spec.height), interpolation=interp)
    if spec.resize == "shorter" and spec.fixed_size:
        target = max(spec.height, spec.width)
        s = target / min(img.shape[0], img.shape[1])
        nh, nw = max(target, round(img.shape[0] * s)), max(target, round(img.shape[1] * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    if spec.crop == "center" and spec.fixed_size:
        return center_crop(img, spec.height, spec.width)
    # Full image (fully convolutional models): cap the work on huge inputs by a centre crop.
    h, w = img.shape[:2]
    ch, cw = min(h, spec.max_side), min(w, spec.max_side)
    return center_crop(img, ch, cw) if (ch, cw) != (h, w) else img


def center_crop(img: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h < height or w < width:
        ph, pw = max(0, height - h), max(0, width - w)
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
        h, w = img.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return img[top:top + height, left:left + width]


def normalize(fitted: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 RGB HWC -> float32 tensor (C, H, W) or (H, W, C), mean/std and colour order per the spec."""
    out = np.empty(tensor_shape(fitted, spec), dtype=np.float32)
    normalize_into(fitted, spec, out)
    return out


def tensor_shape(fitted: np.ndarray, spec: InputSpec) -> tuple[int, int, int]:
    """The model-input shape (without batch) of a fitted HWC image under the spec's layout."""
    h, w = fitted.shape[:2]
    return (3, h, w) if spec.layout == "NCHW" else (h, w, 3)


def normalize_into(fitted: np.ndarray, spec: InputSpec, out: np.ndarray) -> None:
    """Write the normalised tensor for ``fitted`` into ``out`` (one slot of a batch buffer).

    The layout transpose and colour swap happen on uint8, then one multiply converts to float32 straight
    into ``out`` and one in-place add finishes ``x * (1 / (scale * std)) - mean / std``. This is ~8x cheaper
    than the textbook ``(x / 255 - mean) / std`` chain with its four temporaries, which matters because
    preprocessing sits on the critical path of every ``detect`` call (the bench's SDK-overhead figure).
    """
    src = fitted[:, :, ::-1] if spec.color_order == "BGR" else fitted
    mul, add = _affine(tuple(spec.mean), tuple(spec.std), float(spec.scale), spec.color_order, spec.layout)
    if spec.layout == "NCHW":
        src = np.ascontiguousarray(src.transpose(2, 0, 1))  # transpose while still uint8: 4x fewer bytes moved
    np.multiply(src, mul, out=out, casting="unsafe")
    out += add


@functools.lru_cache(maxsize=64)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], scale: float, color_order: str,
            layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, offset) so that normalised = pixel * mul + add, shaped for the layout."""
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if color_order == "BGR":
        m, s = m[::-1], s[::-1]
    mul, add = (np.float32(1.0 / scale) / s).astype(np.float32), (-m / s).astype(np.float32)
    if layout == "NCHW":
        mul, add = mul[:, None, None], add[:, None, None]
    mul.flags.writeable = add.flags.writeable = False  # shared by every call
    return mul, add


def preprocess(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One image -> one model input tensor (without the batch axis)."""
    return normalize(fit_to_spec(rgb, spec), spec)


# -- quantized (uint8) model input ---------------------------------------------------------------------
@dataclass(frozen=True)
class QuantizedInput:
    """How a static-INT8 artifact takes its uint8 NHWC input. Stored in the artifact's manifest ``options["input"]``.

    ``values="quantized"``: the tensor its first ``QuantizeLinear`` would have computed from the normalised
    float input, ``clip(round(x / scale) + zero_point, 0, 255)``. Why: a static QDQ model's first node turns
    the normalised float tensor straight back into uint8. On a compact CPU model, building that float tensor
    (4 bytes a value, a cast, a multiply, an add) costs as much as 5 % of the inference; the quantized tensor
    itself is one per-channel affine map of the crop's bytes, computed exactly (:class:`InputQuantizer`) in
    a quarter of the memory.

    ``values="pixels"``: the crop's own RGB bytes. The exporter folded mean/std (and the colour order) into
    the first convolution and quantizes its input as ``pixel - zero_point`` with scale 1, so the SDK has no
    arithmetic left to do: it hands over the crop, placed on a canvas with ``pad`` = (top, left, bottom,
    right) border pixels of colour ``fill`` (RGB) -- the first convolution's zero padding, which the graph
    cannot express in pixels (``export.quantize.fold_input_normalization``).
    """

    scale: float
    zero_point: int
    dtype: str = "uint8"
    layout: str = "NHWC"
    values: str = "quantized"
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    fill: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> QuantizedInput | None:
        """The artifact's input quantization, or None for a float-input artifact."""
        raw = options.get("input")
        if raw is None:
            return None
        try:
            pad, fill = tuple(int(v) for v in raw.get("pad", (0, 0, 0, 0))), tuple(int(v) for v in raw.get("fill", (0, 0, 0)))
            q = cls(scale=float(raw["scale"]), zero_point=int(raw["zero_point"]), dtype=str(raw.get("dtype", "uint8")),
                    layout=str(raw.get("layout", "NHWC")), values=str(raw.get("values", "quantized")),
                    pad=pad, fill=fill)  # type: ignore[arg-type]  # lengths checked below
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"artifact option 'input' must give scale and zero_point, got {raw!r}") from exc
        if (q.dtype != "uint8" or q.layout != "NHWC" or not 0 <= q.zero_point <= 255 or not q.scale > 0
                or q.values not in ("quantized", "pixels") or len(pad) != 4 or not all(0 <= v <= 64 for v in pad)
                or len(fill) != 3 or not all(0 <= v <= 255 for v in fill)
                or (q.values == "pixels" and q.scale != 1.0) or (q.values == "quantized" and any(pad))):
            raise ValueError(f"unsupported quantized input {raw!r} (supported: uint8 NHWC, scale > 0, zero_point "
                             "in 0..255; values 'quantized', or 'pixels' with scale 1, pad 4 x 0..64, fill 3 x 0..255)")
        return q

    def to_options(self) -> dict[str, Any]:
        out = {"dtype": self.dtype, "layout": self.layout, "scale": self.scale, "zero_point": self.zero_point,
               "values": self.values}
        if self.values == "pixels":
            out.update(pad=list(self.pad), fill=list(self.fill))
        return out

    def describe(self) -> str:
        """One line for people: what the artifact's input tensor holds."""
        if self.values == "pixels":
            border = f", {'/'.join(map(str, self.pad))} px border of RGB {self.fill}" if any(self.pad) else ""
            return f"{self.dtype} {self.layout} RGB pixels (normalisation folded into the model{border})"
        return f"{self.dtype} {self.layout} (scale {self.scale:.4g}, zero point {self.zero_point})"


def quantization_lut(spec: InputSpec, q: QuantizedInput) -> np.ndarray:
    """(256, 3) uint8: column c maps a pixel byte of *model* channel c to the quantized input value.

    Computed in the float32 arithmetic of the float path (:func:`normalize_into`: one multiply, one add)
    followed by ONNX Runtime's QuantizeLinear (float32 division, round half to even, saturate), so the
    uint8-input artifact sees exactly the bytes the float-input one computed internally.
    """
    mul, add = _affine(tuple(spec.mean), tuple(spec.std), float(spec.scale), spec.color_order, "NHWC")
    x = np.arange(256, dtype=np.float32)[:, None] * mul + add
    return np.clip(np.rint(x / np.float32(q.scale)) + q.zero_point, 0, 255).astype(np.uint8)


class InputQuantizer:
    """Writes the quantized NHWC input of one fitted RGB crop: one ``cv2.transform`` pass (a per-channel
    affine map with saturation, ~4x cheaper than the float path here), verified at construction to
    reproduce :func:`quantization_lut` byte for byte; where it does not (OpenCV's fixed-point kernel rounds
    differently for some coefficients), an exact ``cv2.LUT`` lookup is used instead. For an artifact that
    takes pixels (``values="pixels"``) it only hands over the crop (``method == "copy"``).
    """

    def __init__(self, spec: InputSpec, q: QuantizedInput) -> None:
        self.params = q
        self._local = threading.local()
        if q.values == "pixels":  # the artifact takes the crop itself, on its padded canvas
            self.method = "copy"
            return
        self.lut = quantization_lut(spec, q)
        mul, add = _affine(tuple(spec.mean), tuple(spec.std), float(spec.scale), spec.color_order, "NHWC")
        m = np.zeros((3, 4), dtype=np.float64)
        for c in range(3):
            src = 2 - c if spec.color_order == "BGR" else c  # model channel c reads this RGB channel
            m[c, src] = float(mul[c]) / q.scale
            m[c, 3] = float(add[c]) / q.scale + q.zero_point
        self._matrix = m
        self._lut3 = np.ascontiguousarray(self.lut[:, None, :])
        self._bgr = spec.color_order == "BGR"
        self.method = "transform" if self._transform_is_exact() else "lut"

    def _transform_is_exact(self) -> bool:
        # OpenCV runs most pixels through a vectorised fixed-point kernel and the last few of each row through a
        # scalar float one. Check both on every byte value of every channel: a long contiguous row (vector
        # body), then rows of one pixel each (scalar tail). Each pixel is mapped on its own, so agreement here
        # means agreement on any image.
        ramp = np.arange(256, dtype=np.uint8)
        body = np.stack([np.roll(ramp, 85 * c) for c in range(3)], axis=-1)[None].repeat(4, axis=0)
        tails = np.zeros((256, 2, 3), dtype=np.uint8)
        tails[:, 0] = body[0]
        one_per_row = tails[:, :1]  # non-contiguous: OpenCV processes it row by row
        return all(np.array_equal(cv2.transform(x, self._matrix), self._lookup(x)) for x in (body, one_per_row))

    def _lookup(self, fitted: np.ndarray) -> np.ndarray:
        return cv2.LUT(np.ascontiguousarray(fitted[:, :, ::-1] if self._bgr else fitted), self._lut3)

    def _transform(self, fitted: np.ndarray, out: np.ndarray) -> None:
        res = cv2.transform(np.ascontiguousarray(fitted), self._matrix, dst=out)
        if res is not out:  # OpenCV allocates instead of writing when ``out`` is not a plain contiguous array
            out[...] = res

    def shape(self, height: int, width: int) -> tuple[int, int, int]:
        """The model-input shape (without batch) for a fitted crop of this size: the canvas, for pixels."""
        t, left, b, r = self.params.pad
        return height + t + b, width + left + r, 3

    def _canvas(self, fitted: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The crop on its padded canvas (``cv2.copyMakeBorder``: one pass, ~40 % cheaper than numpy slices)."""
        t, left, b, r = self.params.pad
        if not (t or left or b or r):
            if out is None:
                return np.array(fitted, order="C")
            out[...] = fitted
            return out
        res = cv2.copyMakeBorder(fitted, t, b, left, r, cv2.BORDER_CONSTANT, dst=out, value=self.params.fill)
        if out is not None and res is not out:  # OpenCV allocated instead of writing into ``out``
            out[...] = res
        return res if out is None else out

    def reused(self, fitted: np.ndarray) -> np.ndarray:
        """Like ``__call__``, but for pixel inputs written into this thread's own canvas, whose border is filled
        once: only the crop is copied. The array is overwritten by this thread's next call, so it is for
        callers that use it at once (a single-image predict), not for ``prepare``."""
        if self.method != "copy":
            return self(fitted)
        shape = self.shape(*fitted.shape[:2])
        buf = getattr(self._local, "canvas", None)
        if buf is None or buf.shape != shape:
            buf = self._local.canvas = self._canvas(fitted)
            return buf
        t, left = self.params.pad[0], self.params.pad[1]
        buf[t:t + fitted.shape[0], left:left + fitted.shape[1]] = fitted
        return buf

    def into(self, fitted: np.ndarray, out: np.ndarray) -> None:
        """Write the uint8 model input (:meth:`shape`) for an RGB uint8 crop into ``out``."""
        if self.method == "copy":
            self._canvas(fitted, out)
        elif self.method == "transform":
            self._transform(fitted, out)
        else:
            out[...] = self._lookup(fitted)

    def __call__(self, fitted: np.ndarray) -> np.ndarray:
        """The uint8 model input (:meth:`shape`) for an RGB uint8 crop, as a new contiguous array."""
        if self.method == "copy":
            return self._canvas(fitted)
        if self.method == "transform":
            return cv2.transform(np.ascontiguousarray(fitted), self._matrix)
        return self._lookup(fitted)
