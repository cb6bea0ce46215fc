"""TensorRT engines: the compatibility checks run everywhere; real engines only where TensorRT and a GPU exist.

TensorRT cannot be installed on this project's CI (its libraries come from a host that is unreachable), so the
engine build/run test below is skipped there with that reason and TensorRT support is reported UNVERIFIED.
"""

import importlib.util

import pytest

from aligngemini_sdk.errors import EngineMismatchError, MissingExtraError
from aligngemini_sdk.export.tensorrt_build import build_key
from aligngemini_sdk.runtimes.tensorrt import check_engine_compatible

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def test_engine_for_another_gpu_is_refused_clearly():
    with pytest.raises(EngineMismatchError, match=r"compute capability 8\.6"):
        check_engine_compatible({"compute_capability": "8.6", "trt_version": "10.3.0"}, "10.3.0", "9.0")


def test_engine_for_another_tensorrt_version_is_refused():
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3"):
        check_engine_compatible({"compute_capability": "9.0", "trt_version": "10.3.0"}, "11.0.1", "9.0")
    check_engine_compatible({"compute_capability": "9.0", "trt_version": "10.3.0"}, "10.3.1", "9.0")  # patch ok


def test_build_key_covers_gpu_version_model_and_flags():
    k = build_key("a" * 64, "9.0", "10.3.0", True, True)
    assert k != build_key("b" * 64, "9.0", "10.3.0", True, True)
    assert k != build_key("a" * 64, "8.9", "10.3.0", True, True)
    assert k != build_key("a" * 64, "9.0", "10.4.0", True, True)
    assert k != build_key("a" * 64, "9.0", "10.3.0", True, False)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_names_the_extra(tmp_path):
    from aligngemini_sdk.manifest import InputSpec
    from aligngemini_sdk.runtimes.tensorrt import TensorRTPixel

    with pytest.raises(MissingExtraError, match=r"aligngemini-sdk\[tensorrt\]"):
        TensorRTPixel(tmp_path / "x.engine", InputSpec())


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT not installable here (libraries hosted off the allowed "
                                         "registries); TensorRT path is UNVERIFIED on this CI")
def test_engine_build_and_run_matches_onnx(ladeda_bundle, tmp_path):  # pragma: no cover - needs a GPU
    import numpy as np

    from aligngemini_sdk import Bundle
    from aligngemini_sdk.export.tensorrt_build import build_engine
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel
    from aligngemini_sdk.runtimes.tensorrt import TensorRTPixel

    b = Bundle.open(ladeda_bundle)
    onnx_path = b.verified_path(b.manifest.pixel.artifacts["fp32"].files["model"])
    opts = build_engine(onnx_path, tmp_path / "m.engine", fp16=False, min_shape=(1, 3, 64, 64),
                        opt_shape=(1, 3, 256, 256), max_shape=(4, 3, 512, 512), cache_dir=tmp_path / "cache")
    trt = TensorRTPixel(tmp_path / "m.engine", b.manifest.pixel.input, options=opts)
    ort = OnnxRuntimePixel(onnx_path, b.manifest.pixel.input, device="cpu")
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert abs(trt.predict([img])[0] - ort.predict([img])[0]) < 1e-3
