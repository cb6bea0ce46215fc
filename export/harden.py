"""Make an existing INT8 bundle give the same answers on every CPU, without its float weights and without changing
one dequantized weight: ``aligngemini export harden BUNDLE --out OUT``.

Every int8 weight that the per-node bound (:mod:`.saturation`) cannot clear is re-encoded as uint8 with its zero
point moved by 128: ``(q + 128) - (z + 128) = q - z``, so DequantizeLinear yields the very same floats and the
graph's reference arithmetic is unchanged, bit for bit (checked on real images before anything is written).
u8 x u8 kernels widen to 16-bit operands before they add, so nothing can saturate, on AVX2 as on VNNI or ARM.
The bundle then gets the proof, the kernels-vs-reference figures of this machine, and golden outputs
(``aligngemini verify``). Artifacts that already pass the bound are left as they are (golden outputs added).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk.bundle import Bundle
from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.bundle_writer import file_entry, put_branch
from aligngemini_sdk.export.saturation import WEIGHT_FORMATS, prove, prove_file
from aligngemini_sdk.image import load_image
from aligngemini_sdk.manifest import Artifact, InputSpec
from aligngemini_sdk.preprocess import fit_to_spec
from aligngemini_sdk.progress import log_step
from aligngemini_sdk.quantized_input import QuantizedInput


@dataclass
class HardenedArtifact:
    name: str
    reencoded: int  # weights re-encoded as uint8
    nodes: int  # quantized products checked
    reference_identical: bool  # reference-arithmetic outputs bit-identical before and after
    kernels_vs_reference: dict[str, Any] = field(default_factory=dict)


def reencode_unsafe_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Rewrite the int8 weights of every quantized product the bound cannot clear as uint8 (+128, zero point +128);
    returns how many weight tensors changed. Only DequantizeLinear weights (QDQ) and the B operand of
    MatMulInteger / DynamicQuantizeMatMul (dynamic INT8) are touched."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.fspath(src))
    g = model.graph
    unsafe = {n.weight for n in prove(g).unsafe}
    inits = {i.name: i for i in g.initializer}
    changed = 0
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in unsafe:
            w_name, zp_slot = node.input[0], 2
        elif node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") and node.input[1] in unsafe:
            w_name, zp_slot = node.input[1], 3
        else:
            continue
        q = numpy_helper.to_array(inits[w_name])
        if q.dtype != np.int8:
            continue
        inits[w_name].CopyFrom(numpy_helper.from_array((q.astype(np.int16) + 128).astype(np.uint8), w_name))
        zp = np.zeros(1 if node.op_type == "DequantizeLinear" else (), np.int8)
        if len(node.input) > zp_slot and node.input[zp_slot]:
            zp = numpy_helper.to_array(inits[node.input[zp_slot]])
        zp_name = f"{w_name}_zero_point_u8"
        g.initializer.append(numpy_helper.from_array((zp.astype(np.int16) + 128).astype(np.uint8).reshape(zp.shape),
                                                     zp_name))
        while len(node.input) <= zp_slot:
            node.input.append("")
        node.input[zp_slot] = zp_name
        changed += 1
    still_read = {i for n in g.node for i in n.input}
    for name in [i.name for i in g.initializer if i.name not in still_read]:
        g.initializer.remove(inits[name])  # the int8 zero points no node reads any more
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(dst))
    return changed


def _outputs(model: Path, spec: InputSpec, q: QuantizedInput | None, images: Sequence[np.ndarray],
             reference: bool) -> np.ndarray:
    """Raw model outputs, one row per image."""
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel

    rt = OnnxRuntimePixel(model, spec, device="cpu", input_quantization=q, reference_arithmetic=reference)
    try:
        return np.stack([np.asarray(rt.run_tensor(rt.prepare([im])[0][1]), np.float64).ravel() for im in images])
    finally:
        rt.close()


def _probabilities(outputs: np.ndarray, output: str) -> np.ndarray:
    from aligngemini_sdk.runtimes.base import logits_to_probability

    return np.array([logits_to_probability(row[None], 1, output)[0] for row in outputs])


def _harden_artifact(root: Path, name: str, art: Artifact, spec: InputSpec, crops: Sequence[np.ndarray],
                     threshold: float) -> tuple[Artifact, HardenedArtifact]:
    from aligngemini_sdk.export.pixel import kernels_vs_reference

    model = root / art.files["model"].path
    q = QuantizedInput.from_options(art.options)
    before = _outputs(model, spec, q, crops, reference=True)
    candidate = model.with_name(model.name + ".hardened")
    n = reencode_unsafe_weights(model, candidate)
    after = _outputs(candidate, spec, q, crops, reference=True)
    identical = bool(np.array_equal(before, after))
    if not identical:
        candidate.unlink(missing_ok=True)
        raise ExportError(f"{name}: re-encoding changed the reference arithmetic (max |Δ| "
                          f"{np.max(np.abs(before - after)):.3g}); nothing written")
    proof = prove_file(candidate)
    if not proof.safe:
        candidate.unlink(missing_ok=True)
        raise ExportError(f"{name}: {proof.reason()} after re-encoding; nothing written")
    candidate.replace(model)
    optimized = _outputs(model, spec, q, crops, reference=False)
    output = str(art.options.get("output", "logit"))
    kvr = kernels_vs_reference(_probabilities(optimized, output), _probabilities(after, output), threshold)
    cal = dict(art.options.get("calibration", {}))
    fmt = "u8" if n else cal.get("weights", "s7")
    cal.update(weights=fmt, weight_format=WEIGHT_FORMATS.get(fmt, fmt), int8_safety=proof.to_dict(),
               **({"reencoded": f"{n} int8 weight tensors re-encoded as uint8 (+128, zero point +128): the same "
                                "dequantized weights, reference outputs bit-identical on "
                                f"{len(crops)} images"} if n else {}))
    files = {**art.files, "model": file_entry(root, art.files["model"].path)}
    hardened = dataclasses.replace(art, files=files, options={**art.options, "calibration": cal})
    return hardened, HardenedArtifact(name, n, len(proof.nodes), identical, kvr)


def harden_bundle(src: str | os.PathLike[str], out: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]],
                  ) -> list[HardenedArtifact]:
    """Copy ``src`` to ``out`` (unless they are the same directory) and harden every INT8 pixel artifact there;
    ``images`` (at least 16 real images) check the re-encoding and make the golden outputs."""
    from aligngemini_sdk.export.conformance import add_conformance

    src, out = Path(src), Path(out)
    if len(images) < 16:
        raise ExportError("harden needs at least 16 images to check the re-encoding against")
    if src.resolve() != out.resolve():
        if out.exists():
            raise ExportError(f"{out} exists; choose a new output directory")
        shutil.copytree(src, out)
    b = Bundle.open(out)
    b.verify()
    spec = b.manifest.pixel
    if spec is None:
        raise ExportError(f"{src} has no pixel branch")
    crops = [np.ascontiguousarray(fit_to_spec(load_image(p).rgb, spec.input)) for p in images]
    arts, done = dict(spec.artifacts), []
    for name, art in spec.artifacts.items():
        if art.runtime != "onnxruntime":
            continue
        if art.precision == "int8":
            log_step(f"hardening {name}: re-encoding weights no kernel bound clears")
            art, rep = _harden_artifact(out, name, art, spec.input, crops, spec.threshold)
            done.append(rep)
            gate = spec.validation.get("artifacts", {}).get(name)
            if isinstance(gate, dict):
                gate.update(int8_safety=art.options["calibration"]["int8_safety"],
                            kernels_vs_reference=rep.kernels_vs_reference)
        arts[name] = add_conformance(out, name, art, spec.input, crops)
    pixel = dataclasses.replace(spec, artifacts=arts)
    prov = dict(b.manifest.provenance.get("pixel") or {})
    if any(r.reencoded for r in done):
        prov["hardened"] = ("aligngemini export harden: int8 weights an AVX2 kernel could saturate re-encoded as uint8, "
                            "the same dequantized weights")
    put_branch(out, "pixel", pixel, provenance=prov)
    return done
