"""The SDK's optional C shims: shared libraries built at install time (``setup.py``), whose functions are called
through ctypes (which releases the GIL during each call). Each has a Python path that gives the same result, so a
shim that was not built, or does not load, is a :class:`NativeStatus` saying why, never an error."""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NativeStatus:
    """Whether a C shim is available here, and why not."""

    available: bool
    detail: str


def load_shim(module: str, name: str, needs: str, label: str,
              functions: Mapping[str, Sequence[Any]]) -> tuple[ctypes.CDLL | None, NativeStatus]:
    """The shared library of extension ``module`` (e.g. ``aligngemini_sdk._resize``) with ``functions`` (name ->
    argument types; each returns a C int) declared, or None with the reason: ``name`` is what the reason calls it,
    ``needs`` what building it takes. When loaded, the status's detail is ``label`` and the library's file name."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None, NativeStatus(False, f"{name} was not built at install time ({needs})")
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError as exc:
        return None, NativeStatus(False, f"{name} does not load: {exc}")
    for function, argtypes in functions.items():
        getattr(lib, function).argtypes = list(argtypes)
        getattr(lib, function).restype = ctypes.c_int
    return lib, NativeStatus(True, f"{label} ({spec.origin.rsplit('/', 1)[-1]})")
