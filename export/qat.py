"""Quantization-aware fine-tuning for this exporter's static INT8 scheme, simulated in PyTorch.

Why: a pixel-artifact expert reads signals a few grey levels high. Post-training INT8 (per-tensor uint8
activations) adds rounding noise of the same size, and a small CNN trained without ever seeing that noise
can lean on feature directions the noise swamps: the compact default expert trained to 80 % balanced
accuracy and then agreed with its own FP32 self on only 86-90 % of images after INT8, whatever the
calibration method or the layers kept in float. Fine-tuning for a few hundred steps *with* the noise
teaches the model to stop relying on sub-quantization detail, and then the real ONNX Runtime INT8 model
agrees with FP32 again.

The simulation follows :func:`aligngemini_sdk.export.quantize.quantize_int8` exactly where it matters:

- every ``Conv``/``Linear`` gets its input and its output fake-quantized per tensor (ORT's QDQ Conv and
  Gemm quantize both), uint8 asymmetric with the min/max range of calibration images (ORT's ``minmax``),
  or int8 symmetric for the TensorRT flavour. "Output" means what the exported graph quantizes: after a
  following BatchNorm (folded into the Conv by ONNX export) and ReLU/ReLU6 (folded into the output range by
  ORT's QDQ quantizer), found by following tensors through one calibration batch;
- weights are fake-quantized per output channel, int8 symmetric in the exporter's safe range [-64, 64]
  (7 bits, :data:`~aligngemini_sdk.export.saturation.SAFE_WEIGHT_MAX`: no CPU kernel can saturate). Per-channel symmetric
  rounding is invariant to a per-channel scale, so quantizing the unfolded weight equals quantizing the
  BatchNorm-folded weight ONNX export produces -- provided BatchNorm statistics stay frozen, which
  :func:`fake_quantized` does (BatchNorm layers are put in eval mode while the simulation is attached).

Gradients pass straight through the rounding (the straight-through estimator of ``torch.fake_quantize_*``).

    with fake_quantized(model, calib_batches):
        for x, y in data: ...train a few hundred steps at a small learning rate...
    export_pixel(PixelExportConfig(module=model, ...))   # the plain float model, now INT8-friendly
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from aligngemini_sdk.export.saturation import SAFE_WEIGHT_MAX

#: Module types whose inputs, outputs and weights ORT's static QDQ scheme quantizes (DEFAULT_OP_TYPES).
QUANTIZED_MODULES = ("Conv1d", "Conv2d", "Linear")


def _activation_qparams(lo: float, hi: float, symmetric: bool) -> tuple[float, int, int, int]:
    """(scale, zero_point, qmin, qmax) as ORT computes them for a calibrated range."""
    lo, hi = min(0.0, lo), max(0.0, hi)
    if symmetric:
        bound = max(abs(lo), abs(hi), 1e-8)
        return bound / 127.0, 0, -127, 127
    scale = max(hi - lo, 1e-8) / 255.0
    return scale, round(-lo / scale), 0, 255


class _WeightFakeQuant:
    """Parametrization: per-output-channel int8 symmetric fake quantization of a weight, in [-64, 64]."""

    def __new__(cls):  # built lazily so importing this module does not need torch
        import torch
        from torch import nn

        class WeightFakeQuant(nn.Module):
            def forward(self, w: torch.Tensor) -> torch.Tensor:
                flat = w.detach().reshape(w.shape[0], -1).abs().amax(dim=1).clamp_min(1e-12)
                scale = (flat / SAFE_WEIGHT_MAX).to(torch.float32)
                zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
                return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -SAFE_WEIGHT_MAX, SAFE_WEIGHT_MAX)

        return WeightFakeQuant()


class FakeQuantHandle:
    """The attached simulation: per-module activation ranges, and :meth:`remove` to detach it."""

    def __init__(self) -> None:
        self.ranges: dict[str, dict[str, Any]] = {}  # module -> {"in": (lo, hi), "out": (lo, hi), "out_after": name}
        self._hooks: list[Any] = []
        self._parametrized: list[Any] = []
        self._bn_modes: list[tuple[Any, bool]] = []

    def remove(self) -> None:
        """Detach hooks and weight parametrizations, leaving the plain float weights; restore BatchNorm modes."""
        from torch.nn.utils import parametrize

        for h in self._hooks:
            h.remove()
        for m in self._parametrized:
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
        for m, was_training in self._bn_modes:
            with contextlib.suppress(AttributeError):
                del m.train  # drop the instance override that pinned eval mode
            m.train(was_training)
        self._hooks, self._parametrized, self._bn_modes = [], [], []


def _freeze_batchnorm(model: Any, handle: FakeQuantHandle) -> None:
    """BatchNorm in eval mode (running statistics frozen) even when ``model.train()`` is called later."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            handle._bn_modes.append((m, m.training))
            m.eval()
            # model.train() would flip it back; pin eval by overriding this instance's train()
            m.train = lambda mode=True, _m=m: nn.Module.train(_m, False)


#: Modules ONNX export folds into the preceding Conv/Gemm (BatchNorm) or ORT's QDQ folds into its output range.
FOLDED_MODULES = ("BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6", "Hardtanh")


def _output_chains(model: Any, x: Any, targets: dict[str, Any]) -> dict[str, str]:
    """For each target module, the module whose output is what the exported graph quantizes as the target's output.

    ONNX export folds a following BatchNorm into the Conv, and ORT's QDQ quantizer folds a following Relu/Clip
    into the Conv's output range; so the quantized "Conv output" is the output of conv -> [BatchNorm] -> [ReLU6].
    Found by running one batch and following tensor identity from module to module (modules only: a functional
    ``F.relu`` is not seen, and the simulation then quantizes the raw output, i.e. errs on the noisy side).
    """
    import torch

    calls: list[tuple[str, Any, Any]] = []
    name_of = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(lambda m, a, o: calls.append((name_of[m], a[0] if a else None, o)))
             for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    modules = dict(model.named_modules())
    chains = {}
    first_call: dict[str, int] = {}
    for i, c in enumerate(calls):
        first_call.setdefault(c[0], i)
    for name in targets:
        if name not in first_call:
            continue  # never runs in forward(): nothing to simulate
        end = name
        idx = first_call[name]
        out = calls[idx][2]
        for nxt_name, nxt_in, nxt_out in calls[idx + 1:]:
            if nxt_in is not out or type(modules[nxt_name]).__name__ not in FOLDED_MODULES:
                if nxt_in is out:
                    break  # consumed by something that is not folded: the chain ends here
                continue
            end, out = nxt_name, nxt_out
        chains[name] = end
    return chains


def attach_fake_quant(model: Any, calib: Iterable[Any], *, symmetric: bool = False,
                      exclude: Sequence[str] = ()) -> FakeQuantHandle:
    """Calibrate activation ranges on ``calib`` (batches of model inputs, no gradients, eval mode), then attach
    the INT8 simulation to every quantizable module not named in ``exclude``. Returns the handle."""
    import torch
    from torch.nn.utils import parametrize

    targets = {name: m for name, m in model.named_modules()
               if type(m).__name__ in QUANTIZED_MODULES and name not in exclude}
    modules = dict(model.named_modules())
    handle = FakeQuantHandle()
    batches = list(calib)
    if not batches:
        raise ValueError("attach_fake_quant needs at least one calibration batch")
    was_training = model.training
    model.eval()
    chains = _output_chains(model, batches[0], targets)
    targets = {n: m for n, m in targets.items() if n in chains}
    try:
        seen = _observed_ranges(model, batches, targets, {n: modules[end] for n, end in chains.items()})
    finally:
        model.train(was_training)

    def fake_quant(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        scale, zp, qmin, qmax = _activation_qparams(lo, hi, symmetric)
        return torch.fake_quantize_per_tensor_affine(t, scale, zp, qmin, qmax)

    for name, m in targets.items():
        (ilo, ihi), (olo, ohi) = seen[name + ":in"], seen[name + ":out"]
        handle.ranges[name] = {"in": (ilo, ihi), "out": (olo, ohi), "out_after": chains[name]}
        handle._hooks.append(m.register_forward_pre_hook(
            lambda _m, args, lo=ilo, hi=ihi: (fake_quant(args[0], lo, hi), *args[1:])))
        handle._hooks.append(modules[chains[name]].register_forward_hook(
            lambda _m, _a, out, lo=olo, hi=ohi: fake_quant(out, lo, hi)))
        parametrize.register_parametrization(m, "weight", _WeightFakeQuant())
        handle._parametrized.append(m)
    _freeze_batchnorm(model, handle)
    return handle


def _observed_ranges(model: Any, batches: list[Any], targets: dict[str, Any], ends: dict[str, Any]) -> dict[str, list[float]]:
    """Min and max, over ``batches``, of each target's input ("NAME:in") and of the output of its chain's end
    ("NAME:out": what the exported graph quantizes as its output, see _output_chains)."""
    import torch

    seen: dict[str, list[float]] = {}

    def observer(key: str, use_input: bool) -> Any:
        def hook(_m: Any, inputs: tuple[Any, ...], output: Any) -> None:
            t = inputs[0] if use_input else output
            r = seen.setdefault(key, [float("inf"), float("-inf")])
            r[0], r[1] = min(r[0], float(t.min())), max(r[1], float(t.max()))
        return hook

    observers = [m.register_forward_hook(observer(n + ":in", True)) for n, m in targets.items()]
    observers += [end.register_forward_hook(observer(n + ":out", False)) for n, end in ends.items()]
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for h in observers:
            h.remove()
    return seen


@contextlib.contextmanager
def fake_quantized(model: Any, calib: Iterable[Any], *, symmetric: bool = False,
                   exclude: Sequence[str] = ()) -> Iterator[FakeQuantHandle]:
    """Context manager form of :func:`attach_fake_quant`; the model is plain float again on exit."""
    handle = attach_fake_quant(model, calib, symmetric=symmetric, exclude=exclude)
    try:
        yield handle
    finally:
        handle.remove()
