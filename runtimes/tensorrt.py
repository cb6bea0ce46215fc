"""Pixel branch on a serialized TensorRT engine (TensorRT 10/11 Python API, CUDA via cuda-python).

Engines are specific to a GPU architecture and TensorRT version. The exporter records both in the
artifact's ``options`` (``compute_capability``, ``trt_version``); we check them *before*
deserializing, so a wrong engine gives :class:`EngineMismatchError` instead of a crash or garbage.

UNVERIFIED in this repository's CI: TensorRT cannot be installed there. Tests for this module run
only where ``tensorrt`` imports and a GPU is present, and are skipped with that reason elsewhere.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from aligngemini_sdk.errors import EngineMismatchError, RuntimeUnavailableError
from aligngemini_sdk.extras import require
from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.runtimes.base import TensorPixelRuntime


def _cuda_check(result: Any) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeUnavailableError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def gpu_compute_capability(device_index: int = 0) -> str:
    """'8.9'-style compute capability of a GPU, via cuda-python's runtime bindings."""
    cudart = _cudart()
    major = _cuda_check(cudart.cudaDeviceGetAttribute(
        cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, device_index))
    minor = _cuda_check(cudart.cudaDeviceGetAttribute(
        cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, device_index))
    return f"{major}.{minor}"


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        cudart = require("cuda.cudart", "TensorRT engines (CUDA runtime bindings)")
    return cudart


def check_engine_compatible(options: dict[str, Any], trt_version: str, compute_capability: str) -> None:
    """Raise EngineMismatchError when an engine's build key does not match this GPU/TensorRT."""
    built_cc, built_trt = options.get("compute_capability"), options.get("trt_version")
    if built_cc and built_cc != compute_capability:
        raise EngineMismatchError(f"TensorRT engine was built for compute capability {built_cc}; this GPU is "
                                  f"{compute_capability}. Rebuild it with `aligngemini export pixel --trt`.")
    if built_trt and built_trt.split(".")[:2] != trt_version.split(".")[:2]:
        raise EngineMismatchError(f"TensorRT engine was built with TensorRT {built_trt}; installed is "
                                  f"{trt_version}. Engines are not portable across versions: rebuild it.")


class TensorRTPixel(TensorPixelRuntime):
    """Runs a TensorRT engine with one input (N,3,H,W) and one fake-logit output."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], spec: InputSpec, *, artifact: str = "",
                 options: dict[str, Any] | None = None, output: str = "logit") -> None:
        trt = require("tensorrt")
        self._cudart = _cudart()
        self.spec, self.artifact, self.output = spec, artifact, output
        check_engine_compatible(options or {}, trt.__version__, gpu_compute_capability())
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        with open(engine_path, "rb") as fh:
            self.engine = runtime.deserialize_cuda_engine(fh.read())
        if self.engine is None:
            raise EngineMismatchError(f"TensorRT could not deserialize {engine_path} (wrong GPU or version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.stream = _cuda_check(self._cudart.cudaStreamCreate())
        self._lock = threading.Lock()  # one execution context: serialise
        self.trt_version = trt.__version__

    def run_tensor(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        x = np.ascontiguousarray(batch.astype(self.input_dtype, copy=False))
        with self._lock:
            self.context.set_input_shape(self.input_name, x.shape)
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            y = np.empty(out_shape, dtype=self.output_dtype)
            d_in = _cuda_check(cudart.cudaMalloc(x.nbytes))
            d_out = _cuda_check(cudart.cudaMalloc(y.nbytes))
            try:
                kind_h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                kind_d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
                _cuda_check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, kind_h2d, self.stream))
                self.context.set_tensor_address(self.input_name, int(d_in))
                self.context.set_tensor_address(self.output_name, int(d_out))
                if not self.context.execute_async_v3(int(self.stream)):
                    raise RuntimeUnavailableError("TensorRT execute_async_v3 failed")
                _cuda_check(cudart.cudaMemcpyAsync(y.ctypes.data, d_out, y.nbytes, kind_d2h, self.stream))
                _cuda_check(cudart.cudaStreamSynchronize(self.stream))
            finally:
                cudart.cudaFree(d_in)
                cudart.cudaFree(d_out)
        return y

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "artifact": self.artifact, "trt_version": self.trt_version,
                "input_dtype": self.input_dtype.name}

    def close(self) -> None:
        if getattr(self, "stream", None) is not None:
            self._cudart.cudaStreamDestroy(self.stream)
            self.stream = None
