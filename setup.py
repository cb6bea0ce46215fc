"""Only what pyproject.toml cannot declare: the optional C shim of the JPEG fast path (aligngemini_sdk.jpeg).

A shared library whose C functions are called through ctypes (its Python module is empty). ``optional=True``: without a C compiler or
libjpeg-turbo's headers the install still succeeds and JPEGs take OpenCV's full decode (``aligngemini sys``
says which)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("aligngemini_sdk._jpeg_region", ["sdk/_native/jpeg_region.c"], libraries=["jpeg"],
                             extra_compile_args=["-O2"], optional=True)])
