"""Golden outputs for an exported artifact (the writer side of :mod:`aligngemini_sdk.conformance`).

Inputs: a few validation crops plus two synthetic extremes that drive the integer kernels hardest (an all-255
image: every first-layer pair sum at its largest; a 0/255 checkerboard: the largest high-frequency
activations), prepared exactly as the SDK feeds the artifact. Expected outputs: the file's reference
arithmetic. Tolerance: the precision's floor, or three times the largest gap between this machine's
optimized kernels and the reference arithmetic on the validation crops, whichever is larger. For INT8 that
gap is what remains once no kernel can saturate (a requantization rounding one step apart, carried
forward); a saturating kernel moved logits by whole units (see :mod:`.saturation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aligngemini_sdk.conformance import REFERENCE, ROLE, encode
from aligngemini_sdk.export.bundle_writer import file_entry
from aligngemini_sdk.manifest import Artifact, InputSpec
from aligngemini_sdk.quantized_input import QuantizedInput

#: smallest tolerance per precision, in output (logit) units
TOLERANCE_FLOOR: dict[str, float] = {"fp32": 1e-3, "fp16w": 1e-3, "fp16": 2e-2, "int8": 2e-2}  # fp16w computes in FP32
TOLERANCE_FACTOR = 3.0
N_REAL = 4
MAX_DERIVE = 64
SYNTHETIC_SIDE = 64  # full-image specs (no fixed size) get synthetic inputs of this side
FULL_IMAGE_SIDE = 96  # ...and real images cut to at most this side


def golden_images(crops: Sequence[np.ndarray], spec: InputSpec, n_real: int = N_REAL) -> list[np.ndarray]:
    """``n_real`` crops spread over ``crops``, then the all-255 image and the 0/255 checkerboard."""
    h, w = (spec.height, spec.width) if spec.fixed_size else (SYNTHETIC_SIDE, SYNTHETIC_SIDE)
    picks = [crops[int(i)] for i in np.linspace(0, len(crops) - 1, min(n_real, len(crops)))] if crops else []
    if not spec.fixed_size:  # a full-image model takes any size: a corner of each image keeps the file small
        picks = [np.ascontiguousarray(p[:FULL_IMAGE_SIDE, :FULL_IMAGE_SIDE]) for p in picks]
    yy, xx = np.mgrid[:h, :w]
    checker = np.repeat((((yy + xx) % 2) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return [*picks, np.full((h, w, 3), 255, np.uint8), checker]


def add_conformance(out: Path, name: str, art: Artifact, spec: InputSpec, crops: Sequence[np.ndarray]) -> Artifact:
    """Write ``<model>.conformance.npz`` beside the artifact's model and return the artifact listing it."""
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel

    model = out / art.files["model"].path
    q = QuantizedInput.from_options(art.options)
    opt = OnnxRuntimePixel(model, spec, device="cpu", input_quantization=q)
    ref = OnnxRuntimePixel(model, spec, device="cpu", input_quantization=q, reference_arithmetic=True)
    try:
        inputs = [opt.prepare([im])[0][1] for im in golden_images(crops, spec)]
        expected = np.concatenate([np.asarray(ref.run_tensor(x), np.float64).reshape(1, -1) for x in inputs])
        probe = inputs + [opt.prepare([c])[0][1] for c in crops[:MAX_DERIVE]]
        gap = max(float(np.max(np.abs(np.asarray(opt.run_tensor(x), np.float64) -
                                      np.asarray(ref.run_tensor(x), np.float64)))) for x in probe)
    finally:
        opt.close()
        ref.close()
    floor = TOLERANCE_FLOOR.get(art.precision, TOLERANCE_FLOOR["fp16"])
    tol = max(floor, TOLERANCE_FACTOR * gap)
    path = model.with_name(model.name.removesuffix(".onnx") + ".conformance.npz")
    path.write_bytes(encode(inputs, expected))
    from aligngemini_sdk.device import cpu_label

    options = {**art.options, ROLE: {
        "inputs": len(inputs), "tolerance": tol, "reference": REFERENCE,
        "tolerance_rule": f"max({floor:g}, {TOLERANCE_FACTOR:g} x the largest optimized-vs-reference gap on "
                          f"{len(probe)} inputs on the export machine)",
        "export_gap": gap, "export_cpu": cpu_label()}}
    files = {**art.files, ROLE: file_entry(out, path.relative_to(out).as_posix())}
    return dataclasses.replace(art, files=files, options=options)
