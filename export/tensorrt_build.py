"""Build TensorRT engines from (QDQ) ONNX with the TensorRT 10/11 Python API, cached by build key.

The cache key is (GPU compute capability, TensorRT version, ONNX SHA-256, precision flags): an engine is
only valid for that exact combination, which the runtime re-checks before loading.

UNVERIFIED here: TensorRT cannot be installed on this project's CI machines; this code is exercised
by tests that run only where ``tensorrt`` and a GPU exist.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from aligngemini_sdk.bundle import sha256_file
from aligngemini_sdk.cache import default_cache_dir
from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.extras import require


def build_key(onnx_sha256: str, compute_capability: str, trt_version: str, fp16: bool, int8: bool) -> str:
    raw = f"{onnx_sha256}|sm{compute_capability}|trt{trt_version}|fp16={fp16}|int8={int8}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def build_engine(onnx_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, fp16: bool = True,
                 int8: bool = False, min_shape: tuple[int, ...] = (1, 3, 336, 336),
                 opt_shape: tuple[int, ...] = (1, 3, 336, 336), max_shape: tuple[int, ...] = (8, 3, 336, 336),
                 workspace_gb: float = 2.0, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Build (or fetch from cache) an engine; returns the artifact options recorded in the manifest."""
    trt = require("tensorrt")
    from aligngemini_sdk.runtimes.tensorrt import gpu_compute_capability

    cc = gpu_compute_capability()
    onnx_sha = sha256_file(onnx_path)
    key = build_key(onnx_sha, cc, trt.__version__, fp16, int8)
    cache = Path(cache_dir) if cache_dir else default_cache_dir() / "trt"
    cached = cache / f"{key}.engine"
    options = {"compute_capability": cc, "trt_version": trt.__version__, "onnx_sha256": onnx_sha,
               "build_key": key, "fp16": fp16, "int8": int8}
    if not cached.is_file():
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TRT 10+
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(os.fspath(onnx_path)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT could not parse {onnx_path}: {errs}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if fp16 and hasattr(trt.BuilderFlag, "FP16"):  # TRT 11 drops weak typing flags for strongly typed nets
            config.set_flag(trt.BuilderFlag.FP16)
        if int8 and hasattr(trt.BuilderFlag, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the QDQ nodes
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, min_shape, opt_shape, max_shape)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError("TensorRT engine build failed (see TensorRT log above)")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(bytes(serialized))
        os.replace(tmp, cached)
    shutil.copyfile(cached, out_path)
    return options
