"""aligngemini-sdk: on-device AlignGemini, a two-branch detector of AI-generated images.

The device-side import is numpy + OpenCV + onnxruntime only; llama.cpp and TensorRT load lazily when
a bundle needs them, and export tooling (torch) lives in :mod:`aligngemini_sdk.export`.
"""

import os as _os

# An on-device SDK writes nowhere but its own cache: onnxruntime 1.32 otherwise writes a device id and a telemetry
# database under ~/.cache/Microsoft when it is imported. The switch is read at import, so it is set before any
# module below imports onnxruntime (an application that imported onnxruntime earlier has made its own choice).
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from aligngemini_sdk.budget import PowerMode
from aligngemini_sdk.bundle import Bundle
from aligngemini_sdk.detector import Detector, DetectorOptions, default_bundle_path
from aligngemini_sdk.device import Device
from aligngemini_sdk.errors import (
    AlignGeminiError,
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    BundleSignatureError,
    EngineMismatchError,
    ExportError,
    GateFailedError,
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    InputShapeError,
    MissingExtraError,
    RuntimeUnavailableError,
)
from aligngemini_sdk.image import Image, load_image
from aligngemini_sdk.manifest import Manifest
from aligngemini_sdk.result import BranchResult, DetectionResult

__version__ = "0.1.0"

__all__ = [
    "AlignGeminiError", "BranchResult", "Bundle", "BundleError", "BundleFormatError", "BundleIntegrityError",
    "BundleSignatureError",
    "DetectionResult", "Detector", "DetectorOptions", "Device", "EngineMismatchError", "ExportError", "GateFailedError",
    "Image", "ImageDecodeError", "ImageError", "ImageTooLargeError", "InputShapeError", "Manifest",
    "MissingExtraError", "PowerMode", "RuntimeUnavailableError", "__version__", "default_bundle_path", "load_image",
]
