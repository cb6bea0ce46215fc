"""Quantization-aware fine-tuning: the PyTorch simulation stands in for ONNX Runtime's static INT8 model, and
detaching it leaves the plain float model."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from aligngemini_sdk.export.qat import fake_quantized  # noqa: E402
from aligngemini_sdk.export.quantize import model_logits, quantize_int8  # noqa: E402


def _net() -> nn.Module:
    """Conv-BN-ReLU6 blocks, a residual-free projection, global pooling and a linear head (EfficientNet-Lite
    shaped), with BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 24, 1), nn.BatchNorm2d(24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 1))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 2.0)
                m.weight.uniform_(0.5, 2.0)
        net[-1].weight.mul_(20.0)  # a high-gain head, like a trained detector's: rounding shows in the logit
    return net.eval()


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 48, 48)).astype(np.float32)


def test_simulation_predicts_the_onnxruntime_int8_model(tmp_path):
    net = _net()
    calib, test = _images(32, 0), _images(16, 1)
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.from_numpy(calib[:1]),), str(fp32), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    int8 = model_logits(quantize_int8(fp32, tmp_path / "q.onnx", list(calib)), list(test))[:, 0]
    with torch.no_grad():
        float_out = net(torch.from_numpy(test))[:, 0].numpy()
        with fake_quantized(net, [torch.from_numpy(calib[i:i + 8]) for i in range(0, 32, 8)]) as h:
            simulated = net(torch.from_numpy(test))[:, 0].numpy()
    # what ONNX quantizes as each conv's output is taken after the folded BatchNorm and ReLU6
    assert h.ranges["0"]["out_after"] == "2" and h.ranges["6"]["out_after"] == "7"
    float_err, sim_err = np.abs(float_out - int8).mean(), np.abs(simulated - int8).mean()
    assert float_err > 1e-2  # INT8 really differs from float here, so the comparison means something
    assert sim_err < 0.25 * float_err, (sim_err, float_err)


def test_detaching_restores_the_float_model_and_batchnorm_modes():
    net = _net().train()
    x = torch.from_numpy(_images(4, 2))
    net.eval()
    with torch.no_grad():
        before = net(x)
    net.train()
    with fake_quantized(net, [x]):
        net.train()  # training code calls this; BatchNorm statistics must stay frozen under the simulation
        assert not net[1].training and net[0].training
        net(x)  # a training-mode forward would update unfrozen running statistics
    assert net[1].training  # the mode it had before
    net.eval()
    with torch.no_grad():
        after = net(x)
    assert torch.equal(before, after)
    assert not hasattr(net[0], "parametrizations")
