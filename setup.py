"""Only what pyproject.toml cannot declare: the optional C shims of the JPEG fast path (aligngemini_sdk.jpeg) and of
the integer resizes (aligngemini_sdk.resize).

Shared libraries whose C functions are called through ctypes (their Python modules are empty). ``optional=True``:
without a C compiler or libjpeg-turbo's headers the install still succeeds; JPEGs then take OpenCV's full decode and
the resizes their numpy path, which gives the same bytes (``aligngemini sys`` says which)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("aligngemini_sdk._jpeg_region", ["sdk/_native/jpeg_region.c"], libraries=["jpeg"],
                             extra_compile_args=["-O2"], optional=True),
                   Extension("aligngemini_sdk._resize", ["sdk/_native/resize.c"],
                             extra_compile_args=["-O3"], optional=True)])
