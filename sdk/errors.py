"""Typed errors. Every failure a user can cause has its own class so callers can handle it precisely.

All inherit from :class:`AlignGeminiError`, so ``except AlignGeminiError`` catches everything the SDK raises
on purpose; anything else escaping is a bug.
"""

from __future__ import annotations

from typing import Any


class AlignGeminiError(Exception):
    """Base class of every error the SDK raises deliberately."""


class ImageError(AlignGeminiError, ValueError):
    """An input image could not be used. ``source`` names the input (a path, or a description)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ImageDecodeError(ImageError):
    """Unreadable, truncated, empty or unsupported image data."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class InputShapeError(ImageError):
    """An array input has the wrong shape, dtype or colour order."""


class ModelOutputError(ImageError):
    """A model gave no usable answer for this input (a NaN or infinite output): that input fails, others go on."""


class DetectorClosedError(AlignGeminiError, RuntimeError):
    """The Detector was closed; open a new one."""


class BundleError(AlignGeminiError):
    """A bundle cannot be used."""


class BundleFormatError(BundleError):
    """The manifest is missing, malformed, or of an unsupported schema version."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing, tampered with (checksum mismatch), or its path escapes the bundle."""


class BundleSignatureError(BundleIntegrityError):
    """A bundle that must be signed by a trusted key is unsigned, signed by another key, or changed since signing."""


class MissingExtraError(AlignGeminiError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'aligngemini-sdk[{extra}]'"
        )


class RuntimeUnavailableError(AlignGeminiError):
    """A branch runtime cannot run on this device (no provider, no GPU, engine built elsewhere...)."""


class EngineMismatchError(RuntimeUnavailableError):
    """A TensorRT engine was built for another GPU or TensorRT version."""


class ExportError(AlignGeminiError):
    """An export step failed (unknown architecture, bad weights, converter refusal...)."""


class GateFailedError(ExportError):
    """An exported artifact failed its accuracy/parity gate. ``report`` holds the measured numbers (the export's
    typed report: ``export.gate.GateReport`` for the pixel gate, ``export.vlm.ParityReport`` for the VLM's)."""

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)
