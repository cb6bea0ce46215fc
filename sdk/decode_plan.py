"""Decode only what the branches read.

A bundle's branches each read either a centre crop of the unresized image (the pixel expert: 224 or 336 pixels of
a 12-50 MP photo) or the whole image (a VLM, a whole-image classifier). :class:`DecodePlan` says which, per branch,
from the manifest's input specs; :func:`decode_for_branches` decodes an encoded image accordingly. For a JPEG: a
branch whose spec declares ``jpeg_downscale = "dct"`` gets the image decoded at a reduced DCT scale (its declared
input, whatever else is loaded); when every other branch reads a centre crop, only the rectangle around those
crops is decoded (:func:`aligngemini_sdk.jpeg.decode_region`); otherwise the whole image. A grid HEIC whose branches
all read crops: only the tiles under them (:class:`aligngemini_sdk.heic.Grid`). Crop branches get an
array that :func:`aligngemini_sdk.preprocess.fit_to_spec` turns into exactly the tensor a full decode gives, byte
for byte (``tests/sdk/test_decode_plan.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from aligngemini_sdk import heic, jpeg
from aligngemini_sdk.device import cpu_info, decode_threads
from aligngemini_sdk.errors import ImageDecodeError
from aligngemini_sdk.image import (
    DEFAULT_MAX_PIXELS,
    decode_validated,
    read_image_file,
    sniff_dimensions,
    validate_encoded,
)
from aligngemini_sdk.manifest import InputSpec


@dataclass(frozen=True)
class DecodePlan:
    """Per branch, what it reads: an :class:`InputSpec` (a crop or a resize, as the spec says) or None for the
    whole image as decoded (a VLM's projector resizes it)."""

    specs: dict[str, InputSpec | None] = field(default_factory=dict)

    def rects(self, width: int, height: int) -> dict[str, jpeg.Rect] | None:
        """The displayed-image rectangle each branch reads of a ``width`` x ``height`` image; None if any branch
        reads the whole image (or is padded because the image is smaller than its crop)."""
        out = {}
        for key, spec in self.specs.items():
            rect = crop_rect(spec, width, height) if spec is not None else None
            if rect is None:
                return None
            out[key] = rect
        return out or None


def crop_rect(spec: InputSpec, width: int, height: int) -> jpeg.Rect | None:
    """The rectangle :func:`~aligngemini_sdk.preprocess.fit_to_spec` keeps of an image of this size when it only
    crops (no resize, no padding); None otherwise."""
    if spec.resize != "none":
        return None
    if spec.crop == "center" and spec.fixed_size:
        h, w = spec.height, spec.width
    elif spec.crop == "none":
        h, w = min(height, spec.max_side), min(width, spec.max_side)
    else:
        return None
    if h > height or w > width:
        return None
    return jpeg.Rect((height - h) // 2, (width - w) // 2, h, w)


@dataclass(frozen=True)
class BranchInputs:
    """An image decoded for the branches: the uint8 RGB array each branch reads (the same whole image for all of
    them, each its own crop, or a DCT-reduced image), and how it was decoded ("full", "region", "dct 1/8", joined
    with "+" when branches differ)."""

    name: str
    arrays: dict[str, np.ndarray]
    decode: str
    #: the displayed image's (width, height)
    size: tuple[int, int]

    def for_branch(self, key: str) -> np.ndarray:
        return self.arrays[key]


def whole(rgb: np.ndarray, name: str, keys: tuple[str, ...] = ("pixel", "semantic")) -> BranchInputs:
    """Every branch reads the same, already decoded image."""
    return BranchInputs(name, {k: rgb for k in keys}, "full", (int(rgb.shape[1]), int(rgb.shape[0])))


def reduction(spec: InputSpec | None, width: int, height: int) -> int:
    """The JPEG DCT reduction (1, 2, 4 or 8) a ``jpeg_downscale = "dct"`` branch takes of a ``width`` x ``height``
    image: the largest that keeps both sides at least its resize target (1: decode in full)."""
    if spec is None or spec.jpeg_downscale != "dct" or not spec.fixed_size:
        return 1
    th, tw = (spec.height, spec.width) if spec.resize == "exact" else (max(spec.height, spec.width),) * 2
    for denom in jpeg.REDUCTIONS:
        w, h = jpeg.scaled_size(width, height, denom)
        if w >= tw and h >= th:
            return denom
    return 1


def decode_for_branches(data: bytes, plan: DecodePlan, *, name: str = "<bytes>",
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> BranchInputs:
    """Decode encoded bytes for the plan's branches. A JPEG: a ``dct`` branch gets its reduced decode, and the
    others their rectangle when they all read crops, else the whole image. Other formats: the whole image. The
    same validation as :func:`~aligngemini_sdk.image.decode_bytes` runs first (format, header size against
    ``max_pixels``, truncation)."""
    fmt = validate_encoded(data, name, max_pixels)
    keys = tuple(plan.specs) or ("pixel", "semantic")
    if fmt == "heic":
        return _heic_tiles(data, plan, name, max_pixels) or whole(decode_validated(data, fmt, name, max_pixels),
                                                                  name, keys)
    if fmt != "jpeg":
        return whole(decode_validated(data, fmt, name, max_pixels), name, keys)
    size = _displayed_size(data)
    reduced = {k: d for k, d in ((k, reduction(spec, *size)) for k, spec in plan.specs.items()) if d > 1}
    rest = DecodePlan({k: s for k, s in plan.specs.items() if k not in reduced})
    jobs: list[Callable[[], tuple[dict[str, np.ndarray], str]]] = [
        partial(_scaled, data, key, denom, name, max_pixels) for key, denom in reduced.items()]
    if rest.specs or not reduced:
        jobs.append(partial(_region_or_full, data, rest, size, name, max_pixels, keys))
    arrays: dict[str, np.ndarray] = {}
    how: list[str] = []
    for got, what in _run_all(jobs):
        arrays.update(got)
        how.append(what)
    return BranchInputs(name, arrays, "+".join(how), size)


def _scaled(data: bytes, key: str, denom: int, name: str, max_pixels: int) -> tuple[dict[str, np.ndarray], str]:
    scaled = jpeg.decode_scaled(data, denom, max_pixels)
    return {key: scaled if scaled is not None else _opencv_scaled(data, denom, name)}, f"dct 1/{denom}"


def _region_or_full(data: bytes, rest: DecodePlan, size: tuple[int, int], name: str, max_pixels: int,
                    keys: tuple[str, ...]) -> tuple[dict[str, np.ndarray], str]:
    region = _jpeg_region(data, rest, size, max_pixels)
    if region is not None:
        return region, "region"
    full = decode_validated(data, "jpeg", name, max_pixels)
    return {k: full for k in (rest.specs or keys)}, "full"


def _run_all(jobs: list[Callable[[], tuple[dict[str, np.ndarray], str]]]) -> list[tuple[dict[str, np.ndarray], str]]:
    """The decodes a JPEG needs, in order; side by side when there are several and cores to run them (libjpeg-turbo
    and OpenCV release the GIL): a DCT-reduced decode and a region decode each entropy-decode the file, so on two
    cores they take the time of the longer one, not of both (benchmarks/jpeg_decode.py)."""
    if len(jobs) < 2 or _decode_workers() < 2:
        return [job() for job in jobs]
    futures = [decode_threads().submit(job) for job in jobs[1:]]
    first = jobs[0]()
    return [first] + [f.result() for f in futures]


def _decode_workers() -> int:
    return int(cpu_info()["usable_cores"])



def _displayed_size(data: bytes) -> tuple[int, int]:
    """A validated JPEG's displayed (width, height): its frame header's size, axes swapped by EXIF orientation."""
    dims = sniff_dimensions(data)
    assert dims is not None  # validate_encoded checked it
    return jpeg.displayed_size(*dims, jpeg.exif_orientation(data))


def _opencv_scaled(data: bytes, denom: int, name: str) -> np.ndarray:
    img = jpeg.decode_scaled_opencv(data, denom)
    if img is None:
        raise ImageDecodeError(name, "cannot decode (corrupt or truncated data)")
    return img


def _jpeg_region(data: bytes, plan: DecodePlan, size: tuple[int, int],
                 max_pixels: int) -> dict[str, np.ndarray] | None:
    return _region(plan, size, lambda union: jpeg.decode_region(data, union, max_pixels))


def _heic_tiles(data: bytes, plan: DecodePlan, name: str, max_pixels: int) -> BranchInputs | None:
    """A grid HEIC whose branches all read crops: only the tiles under them (:class:`aligngemini_sdk.heic.Grid`)."""
    tiled = heic.grid(data, max_pixels) if plan.specs else None
    arrays = _region(plan, tiled.size, tiled.decode) if tiled is not None else None
    return None if arrays is None or tiled is None else BranchInputs(name, arrays, "tiles", tiled.size)


def _region(plan: DecodePlan, size: tuple[int, int],
            decode: Callable[[jpeg.Rect], np.ndarray | None]) -> dict[str, np.ndarray] | None:
    """Each branch's crop, cut from one decode of the rectangle around them all; None when a branch reads more than
    a crop or the decoder cannot promise the full decode's pixels."""
    rects = plan.rects(*size)
    if rects is None:
        return None
    top, left = min(r.top for r in rects.values()), min(r.left for r in rects.values())
    union = jpeg.Rect(top, left, max(r.bottom for r in rects.values()) - top,
                      max(r.right for r in rects.values()) - left)
    pixels = decode(union)
    if pixels is None:
        return None
    return {k: pixels[r.top - top:r.bottom - top, r.left - left:r.right - left] for k, r in rects.items()}


def branch_input(path: str | os.PathLike[str], spec: InputSpec, key: str = "pixel") -> np.ndarray:
    """What a branch with this spec reads of an image file, as ``detect()`` decodes it (a JPEG's region or DCT
    reduction included): the exporter's gate and calibration see exactly the runtime's inputs."""
    label = os.fspath(path)
    return decode_for_branches(read_image_file(path, label), DecodePlan({key: spec}), name=label).for_branch(key)
