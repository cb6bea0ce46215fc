"""ONNX Runtime pixel runtime: provider choice with stated fallbacks, batching, output conventions."""

import numpy as np
import pytest

from aligngemini_sdk.errors import RuntimeUnavailableError
from aligngemini_sdk.runtimes.base import logits_to_probability, sigmoid_scalar
from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel, choose_providers

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_provider_choice_and_fallback_reasons():
    cpu_only = ["CPUExecutionProvider"]
    assert choose_providers("cpu", cpu_only) == (["CPUExecutionProvider"], [])
    provs, why = choose_providers("cuda", cpu_only)
    assert provs == ["CPUExecutionProvider"] and "CUDAExecutionProvider is not available" in why[0]
    provs, _ = choose_providers("tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert provs == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0][0] == "CUDAExecutionProvider"
    with pytest.raises(RuntimeUnavailableError):
        choose_providers("abacus", cpu_only)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Reference: the overflow-free logistic function exp(-log(1 + exp(-x)))."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def test_output_conventions():
    assert np.allclose(sigmoid(np.array([0.0, 100.0, -100.0])), [0.5, 1.0, 0.0])
    assert np.allclose(logits_to_probability(np.array([[0.0], [2.0]]), 2), sigmoid(np.array([0.0, 2.0])))
    two = np.array([[1.0, 3.0]])  # [real, fake] logits
    assert logits_to_probability(two, 1)[0] == pytest.approx(sigmoid(np.array([2.0]))[0])
    with pytest.raises(ValueError):
        logits_to_probability(np.zeros((2, 3)), 2)
    xs = [-1000.0, -745.0, -30.0, -1.5, 0.0, 1e-9, 2.0, 40.0, 1000.0]  # both tails, no overflow
    np.testing.assert_allclose([sigmoid_scalar(x) for x in xs], sigmoid(np.array(xs)), rtol=1e-12, atol=0)
    # a batch gets, image by image, the very float one image gets alone
    assert logits_to_probability(np.array(xs)[:, None], len(xs)).tolist() == [sigmoid_scalar(x) for x in xs]


def test_dynamic_shapes_and_grouping(ladeda_bundle):
    from aligngemini_sdk import Bundle

    b = Bundle.open(ladeda_bundle)
    art = b.manifest.pixel.artifacts["fp32"]
    rt = OnnxRuntimePixel(b.verified_path(art.files["model"]), b.manifest.pixel.input, device="cpu", threads=1)
    assert rt.dynamic_batch
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(64, 80, 3), (64, 80, 3), (100, 50, 3)]]
    together = rt.predict(imgs)
    alone = np.array([rt.predict([im])[0] for im in imgs])
    np.testing.assert_allclose(together, alone, rtol=1e-5)
    assert together[0] == together[1]


def test_unloadable_model_is_typed(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    from aligngemini_sdk.manifest import InputSpec

    with pytest.raises(RuntimeUnavailableError, match="could not load"):
        OnnxRuntimePixel(bad, InputSpec(), device="cpu")


def test_input_type_must_match_what_the_manifest_says(tmp_path):
    """A uint8-input model opened as float (or the reverse) is a broken bundle, refused before any inference."""
    import onnx
    from onnx import TensorProto, helper

    from aligngemini_sdk.errors import BundleFormatError
    from aligngemini_sdk.manifest import InputSpec
    from aligngemini_sdk.quantized_input import QuantizedInput

    def model(elem, path):  # one logit per image (the mean), as the SDK checks at load
        g = helper.make_graph([helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
                               helper.make_node("ReduceMean", ["f"], ["y"], axes=[1, 2, 3], keepdims=0)], "m",
                              [helper.make_tensor_value_info("x", elem, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    spec = InputSpec(height=8, width=8)
    with pytest.raises(BundleFormatError, match="takes uint8 but its manifest describes a float input"):
        OnnxRuntimePixel(model(TensorProto.UINT8, tmp_path / "u8.onnx"), spec, device="cpu")
    with pytest.raises(BundleFormatError, match="describes a quantized uint8 input"):
        OnnxRuntimePixel(model(TensorProto.FLOAT, tmp_path / "f.onnx"), spec, device="cpu",
                         input_quantization=QuantizedInput(0.02, 100))
    rt = OnnxRuntimePixel(tmp_path / "u8.onnx", spec, device="cpu", input_quantization=QuantizedInput(0.02, 100))
    assert rt.describe()["input_dtype"] == "uint8" and rt.describe()["input_quantization"]["zero_point"] == 100


@pytest.mark.parametrize("bundle", ["default", "ladeda"])
def test_predict_one_is_predict_of_one_image_also_across_threads(bundle, ladeda_bundle):
    """detect()'s single-image path (a reused per-thread canvas for pixel-input artifacts, no batch lists) gives
    exactly ``predict([image])[0]``; threads running it at once each get their own image's answer."""
    from concurrent.futures import ThreadPoolExecutor

    from aligngemini_sdk import Detector
    from aligngemini_sdk.image import load_image
    from tests.conftest import fake_images, real_images

    det = Detector(None if bundle == "default" else ladeda_bundle)
    rt = det.pixel
    images = [load_image(p).rgb for p in real_images(3) + fake_images(3)]
    expected = [float(rt.predict([im])[0]) for im in images]
    assert len(set(expected)) > 3
    assert [rt.predict_one(im) for im in images] == expected
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(rt.predict_one, images * 4)) == expected * 4
