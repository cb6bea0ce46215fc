"""Pixel branch on ONNX Runtime.

``device`` picks execution providers; when one is unavailable we fall back to the next and record *why*
(``describe()["fallback"]``), rather than silently running on the CPU as raw ORT does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BundleFormatError, RuntimeUnavailableError
from ..image import InputQuantizer, QuantizedInput
from ..manifest import InputSpec
from .base import TensorPixelRuntime

log = logging.getLogger("aligngemini")

#: device name -> preferred provider chain (CPU is always appended last).
DEVICE_PROVIDERS: dict[str, list[str]] = {
    "cpu": [],
    "cuda": ["CUDAExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider"],
    "dml": ["DmlExecutionProvider"],
    "qnn": ["QNNExecutionProvider"],
    "xnnpack": ["XnnpackExecutionProvider"],
    "rocm": ["ROCMExecutionProvider"],
}
AUTO_ORDER = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider",
              "DmlExecutionProvider"]


def choose_providers(device: str, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return (providers to use, human-readable fallbacks taken) for ``device``."""
    if device == "auto":
        wanted = [p for p in AUTO_ORDER if p in available and p != "TensorrtExecutionProvider"]
        return [*wanted[:1], "CPUExecutionProvider"], []
    if device not in DEVICE_PROVIDERS:
        raise RuntimeUnavailableError(f"unknown device {device!r}; known: auto, {', '.join(DEVICE_PROVIDERS)}")
    chosen, fallbacks = [], []
    for p in DEVICE_PROVIDERS[device]:
        if p in available:
            chosen.append(p)
        else:
            fallbacks.append(f"{p} is not available in this onnxruntime build (have: {', '.join(available)})")
    if DEVICE_PROVIDERS[device] and not chosen:
        fallbacks.append(f"device={device!r}: falling back to CPUExecutionProvider")
    return [*chosen, "CPUExecutionProvider"], fallbacks


class OnnxRuntimePixel(TensorPixelRuntime):
    """A pixel-expert ONNX model with manifest preprocessing. ``predict`` is thread-safe (ORT sessions are)."""

    backend = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike[str], spec: InputSpec, *, artifact: str = "",
                 device: str = "auto", threads: int | None = None, output: str = "logit",
                 input_quantization: QuantizedInput | None = None) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.artifact = artifact
        self.output = output
        providers, self.fallbacks = choose_providers(device, ort.get_available_providers())
        for reason in self.fallbacks:
            log.warning("pixel/%s: %s", artifact, reason)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(os.fspath(model_path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise RuntimeUnavailableError(f"onnxruntime could not load {model_path}: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        takes_uint8 = inp.type == "tensor(uint8)"
        if takes_uint8 != (input_quantization is not None):
            have = "uint8" if takes_uint8 else inp.type
            said = "a quantized uint8 input" if input_quantization else "a float input"
            raise BundleFormatError(f"{model_path} takes {have} but its manifest describes {said}; "
                                    "the model and the manifest do not belong together")
        self.input_dtype = np.uint8 if takes_uint8 else np.float16 if "float16" in inp.type else np.float32
        self.quantizer = InputQuantizer(spec, input_quantization) if input_quantization else None
        self.dynamic_batch = not isinstance(inp.shape[0], int)
        self.output_name = self.session.get_outputs()[0].name
        self.threads = threads

    def run_tensor(self, batch: np.ndarray) -> np.ndarray:
        """Raw model call on a preprocessed batch; returns the model output (logits)."""
        batch = batch.astype(self.input_dtype, copy=False)
        if self.dynamic_batch or batch.shape[0] == 1:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.concatenate([self.session.run([self.output_name], {self.input_name: b[None]})[0]
                               for b in batch])

    def describe(self) -> dict[str, Any]:
        d = {"backend": self.backend, "artifact": self.artifact,
             "providers": self.session.get_providers(), "threads": self.threads,
             "fallback": self.fallbacks, "input_dtype": np.dtype(self.input_dtype).name}
        if self.quantizer is not None:
            d["input_quantization"] = {**self.quantizer.params.to_options(), "method": self.quantizer.method}
        return d

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
