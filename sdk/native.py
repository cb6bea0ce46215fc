"""The SDK's optional C shims: shared libraries built at install time (``setup.py``), whose functions are called
through ctypes (which releases the GIL during each call). Each has a Python path that gives the same result, so a
shim that was not built, or does not load, is a :class:`NativeStatus` saying why, never an error."""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class NativeStatus:
    """Whether a C shim is available here, and why not."""

    available: bool
    detail: str


def load_shim(module: str, name: str, needs: str) -> tuple[ctypes.CDLL | None, NativeStatus]:
    """The shared library of extension ``module`` (e.g. ``aligngemini_sdk._resize``), or None with the reason:
    ``name`` is what the reason calls it, ``needs`` what building it takes. When loaded, the status's detail is the
    library's file name; the caller declares the functions' argument types."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None, NativeStatus(False, f"{name} was not built at install time ({needs})")
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError as exc:
        return None, NativeStatus(False, f"{name} does not load: {exc}")
    return lib, NativeStatus(True, spec.origin.rsplit("/", 1)[-1])
