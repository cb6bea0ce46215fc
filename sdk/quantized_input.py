"""The input contract of static-INT8 artifacts that take uint8 NHWC input: :class:`QuantizedInput` (what the
manifest records: scale, zero point, the canvas border of pixel-input artifacts) and :class:`InputQuantizer` (what
computes that tensor from a fitted crop, bit-identical to the graph's own first ``QuantizeLinear``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import affine


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

    Computed in the float32 arithmetic of the float path (:func:`~aligngemini_sdk.preprocess.normalize_into`: one multiply, one add)
    followed by ONNX Runtime's QuantizeLinear (float32 division, round half to even, saturate), so the
    uint8-input artifact sees exactly the bytes the float-input one computed internally.
    """
    mul, add = affine(tuple(spec.mean), tuple(spec.std), float(spec.scale), spec.color_order, "NHWC")
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
        mul, add = affine(tuple(spec.mean), tuple(spec.std), float(spec.scale), spec.color_order, "NHWC")
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
