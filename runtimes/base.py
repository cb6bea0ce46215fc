"""The one narrow interface every branch runtime implements.

A runtime takes decoded RGB ``uint8`` images and returns P(fake) per image. What sits behind it
(ONNX Runtime, a TensorRT engine, llama.cpp with a vision projector) is invisible to the detector, which
only plans, times and fuses. Pixel runtimes share the manifest-driven preprocessing in
:mod:`aligngemini_sdk.preprocess`; the semantic runtime lets llama.cpp's projector preprocess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import fit_to_spec, normalize_into, tensor_shape
from aligngemini_sdk.quantized_input import InputQuantizer


@runtime_checkable
class BranchRuntime(Protocol):
    """What the detector, the benchmark and the evaluator call on any branch."""

    #: backend name: "onnxruntime", "tensorrt", "llama.cpp"
    backend: str
    #: the manifest artifact this runtime serves (e.g. "int8")
    artifact: str

    @property
    def last_timing(self) -> dict[str, float]:
        """The last call's time per stage in ms (e.g. the VLM's image encoding and prompt evaluation); empty when
        the backend does not split its calls."""
        ...

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(fake) in [0, 1] for each RGB uint8 HWC image, as float64 array of shape (N,)."""
        ...

    def predict_one(self, image: np.ndarray) -> float:
        """P(fake) of one image: ``predict([image])[0]``, on the least work the backend allows."""
        ...

    def describe(self) -> dict[str, Any]:
        """What actually runs: providers/devices, threads, fallbacks taken and why."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class TensorRuntime(BranchRuntime, Protocol):
    """A branch that runs a model on a prepared input tensor (the pixel runtimes): the benchmark times the raw model
    call apart from the SDK's preparation, and batches when the model's batch axis is dynamic."""

    #: whether the model accepts any batch size (else it runs images one by one)
    dynamic_batch: bool

    def prepare(self, images: Sequence[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        """The model-input batches for RGB uint8 images: ``[(indices, batch), ...]``."""
        ...

    def run_tensor(self, batch: np.ndarray) -> np.ndarray:
        """The model's raw output (logits) for one prepared batch."""
        ...


def batched_tensors(images: Sequence[np.ndarray], spec: InputSpec,
                    quantizer: InputQuantizer | None = None) -> list[tuple[list[int], np.ndarray]]:
    """Preprocess images and group equal-shaped tensors into batches: [(indices, batch), ...].

    Fixed-size specs give one batch; full-image specs (fully convolutional models) give one per shape.
    Each image is normalised straight into its slot of the batch buffer (no per-image tensor, no
    ``np.stack`` copy). With a ``quantizer`` (uint8-input INT8 artifacts) the slots are the quantized
    uint8 NHWC input instead of the float tensor.
    """
    groups: dict[tuple[int, ...], tuple[list[int], list[np.ndarray]]] = {}
    for i, img in enumerate(images):
        fitted = fit_to_spec(img, spec)
        idx, fs = groups.setdefault(fitted.shape, ([], []))
        idx.append(i)
        fs.append(fitted)
    out = []
    for idx, fs in groups.values():
        if quantizer is not None:
            batch = np.empty((len(fs), *quantizer.shape(*fs[0].shape[:2])), dtype=np.uint8)
            for slot, fitted in zip(batch, fs):
                quantizer.into(fitted, slot)
        else:
            batch = np.empty((len(fs), *tensor_shape(fs[0], spec)), dtype=np.float32)
            for slot, fitted in zip(batch, fs):
                normalize_into(fitted, spec, slot)
        out.append((idx, batch))
    return out


def sigmoid_scalar(x: float) -> float:
    """The logistic function of one float in plain Python, overflow-free and accurate in both tails.

    Why not numpy: right after a model call its array machinery runs cold; measured ~20 µs of ``detect()``'s
    overhead, against ~4 µs for this."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def logits_to_probability(out: np.ndarray, n: int, output: str = "logit") -> np.ndarray:
    """Accept (N,), (N, 1) or (N, 2) outputs; (N, 2) is treated as [real, fake] logits."""
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, 1] - out[:, 0]
    out = out.reshape(n, -1)
    if out.shape[1] != 1:
        raise ValueError(f"pixel model must output one fake-logit per image, got shape {out.shape}")
    out = out[:, 0]
    if output == "probability":
        return np.clip(out, 0.0, 1.0)
    # sigmoid_scalar per image, not numpy's sigmoid: a batched image gets the very float it gets alone (predict_one)
    return np.fromiter((sigmoid_scalar(v) for v in out.tolist()), dtype=np.float64, count=n)


class TensorPixelRuntime:
    """Shared ``predict`` for pixel runtimes that implement ``run_tensor(batch) -> logits`` (ORT, TensorRT):
    manifest preprocessing, batching by shape, and the logit -> probability convention, in one place."""

    spec: InputSpec
    output: str = "logit"
    #: set for artifacts that take the quantized uint8 input (see :class:`~aligngemini_sdk.quantized_input.QuantizedInput`)
    quantizer: InputQuantizer | None = None
    dynamic_batch: bool = False

    @property
    def last_timing(self) -> dict[str, float]:
        return {}  # one model call: nothing to split

    def run_tensor(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, images: Sequence[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        """The model-input batches for RGB uint8 images, exactly as ``predict`` builds them."""
        return batched_tensors(images, self.spec, self.quantizer)

    def predict_one(self, image: np.ndarray) -> float:
        """P(fake) of one image: ``predict([image])[0]`` with the least work on ``detect()``'s hot path (no
        batch lists; a pixel-input artifact's canvas reused per thread, only the crop copied into it)."""
        if self.quantizer is None or self.output != "logit":
            return float(self.predict([image])[0])
        y = self.run_tensor(self.quantizer.reused(fit_to_spec(image, self.spec))[None])
        return sigmoid_scalar(y.item()) if y.size == 1 else float(logits_to_probability(y, 1, self.output)[0])

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty(len(images), dtype=np.float64)
        for idx, batch in self.prepare(images):
            out[idx] = logits_to_probability(self.run_tensor(batch), len(idx), self.output)
        return out
