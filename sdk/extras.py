"""Lazy imports of optional dependencies, at the boundary that needs them.

The device install is numpy + OpenCV + onnxruntime. Everything else (llama-cpp-python, TensorRT, torch)
is imported only when a feature that needs it is used, and a missing one raises
:class:`~aligngemini_sdk.errors.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from aligngemini_sdk.errors import MissingExtraError

#: module -> (extra, what it is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "llama_cpp": ("gguf", "The semantic (VLM) branch on llama.cpp"),
    "tensorrt": ("tensorrt", "TensorRT engines"),
    "cuda": ("tensorrt", "TensorRT engines (CUDA bindings)"),
    "torch": ("export", "Exporting models"),
    "transformers": ("export", "Exporting DINOv2 / VLM models"),
    "onnx": ("export", "ONNX export and quantization"),
    "peft": ("export", "Merging LoRA adapters"),
    "matplotlib": ("bench", "Benchmark plots"),
    "ray": ("cluster", "Distributed evaluation on Ray"),
    "efficientnet_lite_pytorch": ("train", "Training the default pixel expert"),
    "c2pa": ("c2pa", "Verifying C2PA Content Credentials (the provenance branch)"),
    "cryptography": ("sign", "Signing bundles and checking their signatures"),
    "pillow_heif": ("heic", "Decoding HEIC/HEIF photos (iPhones' and many Android cameras' default format)"),
}


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise a :class:`MissingExtraError` that says which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra, default_purpose = EXTRAS.get(top, ("all", f"This feature ({top})"))
        raise MissingExtraError(top, extra, purpose or default_purpose) from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it twice on failure)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
