"""What this device is: a fingerprint for reports, and the stable key device profiles are stored under."""

from __future__ import annotations

import os
import platform
import re
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aligngemini_sdk.choice import Choice
from aligngemini_sdk.errors import RuntimeUnavailableError
from aligngemini_sdk.extras import available


class Device(Choice):
    """Where branches run. ``auto``: the best accelerator ONNX Runtime offers here, else the CPU; llama.cpp offloads
    layers on ``cuda``/``tensorrt``/``metal``/``vulkan``. A device whose provider is missing falls back to the CPU,
    and says so in ``Detector.info()``."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"
    COREML = "coreml"
    OPENVINO = "openvino"
    DML = "dml"
    QNN = "qnn"
    XNNPACK = "xnnpack"
    ROCM = "rocm"
    METAL = "metal"
    VULKAN = "vulkan"

    @property
    def offloads_vlm(self) -> bool:
        """Whether llama.cpp puts the VLM's layers on a GPU for this device."""
        return self in (Device.CUDA, Device.TENSORRT, Device.METAL, Device.VULKAN)

    @classmethod
    def invalid(cls, value: object) -> Exception:
        return RuntimeUnavailableError(f"unknown device {value!r}; known: {', '.join(cls.names())}")


_INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                      "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm")


#: /proc/cpuinfo flag -> numpy's name for the same CPUID bit. numpy asks CPUID from inside this process, which is what
#: ONNX Runtime's and llama.cpp's kernel dispatch see; /proc/cpuinfo describes the host, and under an emulator
#: (qemu-user) or a hypervisor that masks features the two disagree.
_CPUID_NAMES = {"sse4_2": "SSE42", "avx": "AVX", "avx2": "AVX2", "fma": "FMA3", "f16c": "F16C", "avx512f": "AVX512F",
                "avx512bw": "AVX512BW", "avx512_vnni": "AVX512VNNI", "avx512_bf16": "AVX512BF16", "asimd": "ASIMD",
                "asimddp": "ASIMDDP", "sve": "SVE"}


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """Model, architecture, cores, and the interesting features *this process* can use (``features``).
    ``cpuid_differs`` is true when the process sees fewer features than /proc/cpuinfo lists (an emulated or masked
    CPU); then the flags numpy cannot confirm (AMX, AVX-VNNI, i8mm) are left out too, rather than guessed. (Known
    limit: a host whose only unconfirmable extra is AVX-VNNI, e.g. Alder Lake, emulated as a CPU without it, still
    lists it: nothing numpy can check differs.)"""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and val.strip():
                    model = val.strip()
                elif key in ("flags", "features"):
                    flags.update(val.split())
    except OSError:
        pass
    features, differs = _process_view({f for f in _INTERESTING_FLAGS if f in flags}, _numpy_cpu_features())
    return {"model": model, "arch": platform.machine(), "features": [f for f in _INTERESTING_FLAGS if f in features],
            "cpuid_differs": differs, "logical_cores": os.cpu_count() or 1,
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def _process_view(listed: set[str], seen: dict[str, bool]) -> tuple[set[str], bool]:
    """The flags of ``listed`` (from /proc/cpuinfo) this process's CPUID (``seen``, numpy's names) confirms, and
    whether any listed flag it can check is missing. With nothing ``seen`` (numpy could not tell) ``listed`` stands."""
    if not seen:
        return listed, False
    checkable = {f for f in listed if f in _CPUID_NAMES}
    confirmed = {f for f in checkable if seen.get(_CPUID_NAMES[f])}
    differs = confirmed != checkable
    return confirmed | (set() if differs else listed - checkable), differs


def _numpy_cpu_features() -> dict[str, bool]:
    import importlib

    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, numpy 1
        try:
            return dict(getattr(importlib.import_module(name), "__cpu_features__", {}))
        except ImportError:
            continue
    return {}


def decode_threads() -> ThreadPoolExecutor:
    """The process's image-decoding threads, one per usable core: a HEIC grid's tiles and a JPEG's partial decodes
    run here (starting threads per photo cost ~3 ms each beside a busy runtime). Kept per process id: a forked child
    inherits the pool object but not its threads."""
    return _decode_threads(os.getpid())


@lru_cache(maxsize=1)
def _decode_threads(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(int(cpu_info()["usable_cores"]), thread_name_prefix="aligngemini-decode")


def cpu_label() -> str:
    """The CPU model and its interesting features in one line (``AMD EPYC [sse4_2 avx avx2 fma f16c]``): what a
    measurement that depends on the CPU's kernels records beside its figure."""
    info = cpu_info()
    seen = " (as this process sees it: emulated or masked)" if info["cpuid_differs"] else ""
    return f"{info['model']} [{' '.join(info['features'])}]{seen}"


def int8_kernel_class(features: list[str] | None = None) -> str:
    """The best 8-bit matrix-product instructions this CPU has -- what decides whether INT8 pays (ONNX Runtime's
    MLAS picks its kernel by the same CPUID flags): ``amx`` (AMX-INT8 tiles, beside VNNI), ``vnni`` (AVX-512 or AVX VNNI: u8 x s8 into int32, 4x an FP32 FMA's multiplies),
    ``avx2`` (VPMADDUBSW + VPMADDWD + VPADDD for 32 products: at most ~1.33x FP32's FMAs), ``arm-dotprod``,
    ``arm-neon`` or ``other``. ``features``: :func:`cpu_info`'s list (this CPU's when None)."""
    f = set(cpu_info()["features"] if features is None else features)
    for name, needs in (("amx", {"amx_int8"}), ("vnni", {"avx512_vnni"}), ("vnni", {"avx_vnni"}), ("avx2", {"avx2"}),
                        ("arm-dotprod", {"asimddp"}), ("arm-neon", {"asimd"})):
        if needs <= f:
            return name
    return "other"


def cpu_slug() -> str:
    """The CPU model as a file-name-safe slug (``amd-epyc``): benchmark reports are named after the CPU."""
    return re.sub(r"[^a-z0-9]+", "-", str(cpu_info()["model"]).lower()).strip("-")[:48]


def report_stem() -> str:
    """What a benchmark report measured on this CPU is named after: the model's slug and the INT8 kernel class
    (``amd-epyc-vnni``). One model name covers CPUs of several kinds (AVX2 and VNNI EPYCs), whose reports must not
    overwrite each other. (Reports written before 2026-12-03 may carry the model's slug alone.)"""
    return f"{cpu_slug()}-{int8_kernel_class()}"


def device_key(device: str | Device = Device.CPU, threads: int | None = None) -> str:
    """Key for device profiles: architecture, CPU model, thread count and runtime device.

    Latency depends on all four, so a profile measured with 4 threads is not used for 1 thread.
    """
    info = cpu_info()
    slug = cpu_slug()
    t = threads or info["usable_cores"]
    return f"{info['arch']}-{slug}-{t}t-{Device.CPU if device == Device.AUTO else Device.parse(device)}"


def fingerprint() -> dict[str, Any]:
    """Everything a benchmark report needs to say where it was measured."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    fp: dict[str, Any] = {
        "cpu": cpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "llama_cpp": None,
        "tensorrt": None,
    }
    from aligngemini_sdk import heic, jpeg, resize

    fp["jpeg_region_decode"] = jpeg.status().detail if jpeg.status().available else f"off: {jpeg.status().detail}"
    fp["resize"] = resize.status().detail if resize.status().available else f"numpy: {resize.status().detail}"
    fp["heic"] = heic.status()
    if available("llama_cpp"):
        try:
            import llama_cpp

            fp["llama_cpp"] = llama_cpp.__version__
            fp["llama_cpp_gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
        except Exception as exc:  # a broken native lib should not break a report
            fp["llama_cpp"] = f"unusable: {exc}"
    if available("tensorrt"):
        try:
            import tensorrt

            fp["tensorrt"] = tensorrt.__version__
        except Exception as exc:
            fp["tensorrt"] = f"unusable: {exc}"
    return fp
