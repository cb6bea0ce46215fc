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

from aligngemini_sdk.device import Device
from aligngemini_sdk.errors import BundleFormatError, RuntimeUnavailableError
from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.quantized_input import InputQuantizer, QuantizedInput
from aligngemini_sdk.runtimes.base import TensorPixelRuntime

log = logging.getLogger("aligngemini")

#: device name -> preferred provider chain (CPU is always appended last).
DEVICE_PROVIDERS: dict[Device, list[str]] = {
    Device.CPU: [],
    Device.CUDA: ["CUDAExecutionProvider"],
    Device.TENSORRT: ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    Device.COREML: ["CoreMLExecutionProvider"],
    Device.OPENVINO: ["OpenVINOExecutionProvider"],
    Device.DML: ["DmlExecutionProvider"],
    Device.QNN: ["QNNExecutionProvider"],
    Device.XNNPACK: ["XnnpackExecutionProvider"],
    Device.ROCM: ["ROCMExecutionProvider"],
}
AUTO_ORDER = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider",
              "DmlExecutionProvider"]


def choose_providers(device: str | Device, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return (providers to use, human-readable fallbacks taken) for ``device``."""
    device = Device.parse(device)
    if device == Device.AUTO:
        wanted = [p for p in AUTO_ORDER if p in available and p != "TensorrtExecutionProvider"]
        return [*wanted[:1], "CPUExecutionProvider"], []
    if device not in DEVICE_PROVIDERS:
        raise RuntimeUnavailableError(f"device {device!r} has no ONNX Runtime provider; known: auto, "
                                      f"{', '.join(DEVICE_PROVIDERS)}")
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

    def __init__(self, model_path: str | os.PathLike[str] | bytes, spec: InputSpec, *, artifact: str = "",
                 device: str | Device = Device.AUTO, threads: int | None = None, output: str = "logit",
                 input_quantization: QuantizedInput | None = None, reference_arithmetic: bool = False,
                 spinning: bool = True) -> None:
        """``reference_arithmetic``: graph optimizations off, so a QDQ graph runs as written (QuantizeLinear /
        DequantizeLinear around float ops) instead of on the CPU's integer kernels: the arithmetic the file
        defines, the same on every CPU up to float rounding. The exporter's INT8 gate and the golden outputs of
        :mod:`aligngemini_sdk.conformance` use it; ``detect()`` never does."""
        import onnxruntime as ort

        self.spec = spec
        self.artifact = artifact
        self.output = output
        providers, self.fallbacks = choose_providers(device, ort.get_available_providers())
        for reason in self.fallbacks:
            log.warning("pixel/%s: %s", artifact, reason)
        so = ort.SessionOptions()
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if reference_arithmetic
                                       else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        so.log_severity_level = 3
        self.spinning = spinning
        if not spinning:  # another session shares these cores: idle workers must not spin against its calls
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        label = f"pixel/{artifact or 'model'}" if isinstance(model_path, bytes) else os.fspath(model_path)
        self.session = _open_session(model_path, so, providers, label)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        takes_uint8 = inp.type == "tensor(uint8)"
        if takes_uint8 != (input_quantization is not None):
            have = "uint8" if takes_uint8 else inp.type
            said = "a quantized uint8 input" if input_quantization else "a float input"
            raise BundleFormatError(f"{label} takes {have} but its manifest describes {said}; "
                                    "the model and the manifest do not belong together")
        self.input_dtype = np.uint8 if takes_uint8 else np.float16 if "float16" in inp.type else np.float32
        self.quantizer = InputQuantizer(spec, input_quantization) if input_quantization else None
        check_io(self.session, spec, self.quantizer, label)
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
             "fallback": self.fallbacks, "input_dtype": np.dtype(self.input_dtype).name,
             "spinning": self.spinning}
        if self.quantizer is not None:
            d["input_quantization"] = {**self.quantizer.params.to_options(), "method": self.quantizer.method}
        return d

    def close(self) -> None:
        self.session = None


def _open_session(model: str | os.PathLike[str] | bytes, so: Any, providers: list[str], label: str) -> Any:
    """An InferenceSession. A model given as bytes resolves external data against a folder that does not exist
    (a fresh random name, nothing is created), so a file that references side files its manifest does not list
    fails here; ORT would otherwise look for them relative to the working directory."""
    import uuid

    import onnxruntime as ort

    from aligngemini_sdk.cache import default_cache_dir

    try:
        if not isinstance(model, bytes):
            return ort.InferenceSession(os.fspath(model), sess_options=so, providers=providers)
        nowhere = default_cache_dir() / f"no-side-files-{uuid.uuid4().hex}"
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", os.fspath(nowhere))
        return ort.InferenceSession(model, sess_options=so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        if "xternal data" in str(exc):
            raise BundleFormatError(f"{label}: the model reads external data files its manifest does not list; "
                                    "every file a model reads must be listed and checksummed") from None
        raise RuntimeUnavailableError(f"onnxruntime could not load {label}: {exc}") from None


def check_io(session: Any, spec: InputSpec, quantizer: InputQuantizer | None, label: str) -> None:
    """The opened model and its manifest must agree before the first image: one output of one or two logits per
    image, an image input with 3 channels, and fixed spatial sizes that match the manifest's (plus the canvas
    border of a pixel-input artifact). Raises :class:`BundleFormatError` naming the field."""
    outs, ins = session.get_outputs(), session.get_inputs()
    if len(outs) != 1:
        raise BundleFormatError(f"{label}: model has {len(outs)} outputs; a pixel expert has one (the fake logit)")
    shape = outs[0].shape
    if len(shape) > 2 or (len(shape) == 2 and isinstance(shape[1], int) and shape[1] not in (1, 2)):
        raise BundleFormatError(f"{label}: output shape {shape}: expected (N,), (N, 1) or (N, 2) logits")
    if len(ins) != 1 or len(ins[0].shape) != 4:
        raise BundleFormatError(f"{label}: model must take one 4-D image input, has {[i.shape for i in ins]}")
    dims = ins[0].shape
    channels, hw = (dims[3], dims[1:3]) if quantizer is not None else (dims[1], dims[2:4])  # uint8 input: NHWC
    if isinstance(channels, int) and channels != 3:
        raise BundleFormatError(f"{label}: input has {channels} channels, expected 3 (RGB)")
    fixed = [d for d in hw if isinstance(d, int)]
    if not fixed:
        return
    if not spec.fixed_size:
        raise BundleFormatError(f"{label}: model takes a fixed {hw[0]}x{hw[1]} input but input.height/width say "
                                "the full image")
    want = quantizer.shape(spec.height, spec.width)[:2] if quantizer is not None else (spec.height, spec.width)
    if any(isinstance(d, int) and d != w for d, w in zip(hw, want)):
        raise BundleFormatError(f"{label}: model input is {hw[0]}x{hw[1]} but input.height/width (+ border) give "
                                f"{want[0]}x{want[1]}")
