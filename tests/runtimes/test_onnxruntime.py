"""ONNX Runtime pixel runtime: provider choice with stated fallbacks, batching, output conventions."""

import numpy as np
import pytest
from aligngemini_sdk.errors import RuntimeUnavailableError
from aligngemini_sdk.runtimes.base import logits_to_probability, sigmoid
from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel, choose_providers


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


def test_output_conventions():
    assert np.allclose(sigmoid(np.array([0.0, 100.0, -100.0])), [0.5, 1.0, 0.0])
    assert np.allclose(logits_to_probability(np.array([[0.0], [2.0]]), 2), sigmoid(np.array([0.0, 2.0])))
    two = np.array([[1.0, 3.0]])  # [real, fake] logits
    assert logits_to_probability(two, 1)[0] == pytest.approx(sigmoid(np.array([2.0]))[0])
    with pytest.raises(ValueError):
        logits_to_probability(np.zeros((2, 3)), 2)


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
