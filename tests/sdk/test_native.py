"""aligngemini_sdk.native: an optional C shim loads, or says why it did not -- never an error."""

from __future__ import annotations

import ctypes

import pytest

from aligngemini_sdk import resize
from aligngemini_sdk.native import load_shim


def test_a_shim_that_was_not_built_is_a_reason_not_an_error():
    lib, status = load_shim("aligngemini_sdk._no_such_shim", "the test shim", "needs nothing", "test", {})
    assert lib is None and not status.available
    assert status.detail == "the test shim was not built at install time (needs nothing)"


def test_a_file_that_is_not_a_shared_library_does_not_load_and_says_so():
    lib, status = load_shim("aligngemini_sdk.plot", "the test shim", "needs nothing", "test", {})  # a .py file
    assert lib is None and not status.available and status.detail.startswith("the test shim does not load: ")


def test_a_built_shim_loads_and_names_its_file():
    if not resize.status().available:  # test_resize fails instead where CI requires the shim
        pytest.skip(f"no shim built here: {resize.status().detail}")
    lib, status = load_shim("aligngemini_sdk._resize", "the C resize", "needs a C compiler", "C",
                            {"agr_area": [ctypes.c_void_p] * 8})
    assert lib is not None and status.available and status.detail.startswith("C (_resize.")
    assert lib.agr_area.restype is ctypes.c_int and len(lib.agr_area.argtypes) == 8
