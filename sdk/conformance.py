"""On-device conformance: does this device compute what the bundle's exporter says the model computes?

Every artifact the exporter writes can carry golden outputs (``options.conformance`` and a ``conformance``
file in the artifact's checksummed files): a few model inputs exactly as they enter the artifact, the outputs
the file's *reference arithmetic* gives for them (ONNX Runtime with graph optimizations off: a QDQ graph runs
as written), and a tolerance derived from the precision's scheme. :func:`verify_bundle` runs them through the
same runtime ``detect()`` uses, on this device, and compares. A vendor runs ``aligngemini verify`` on every
new device before shipping: a kernel whose integer arithmetic differs (a saturating INT8 path, a broken
driver, a miscompiled runtime) shows up here as a failure naming the artifact.

The file is an ``.npz`` read with ``allow_pickle=False`` (no code can run from it): arrays ``input_0`` ...
``input_{n-1}`` (each a batch of one) and ``expected`` (n, outputs) float32.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aligngemini_sdk.bundle import Bundle
from aligngemini_sdk.errors import AlignGeminiError, BundleFormatError, RuntimeUnavailableError
from aligngemini_sdk.manifest import Artifact
from aligngemini_sdk.runtimes.base import TensorRuntime

#: the artifact file role that holds golden inputs and outputs
ROLE = "conformance"
EXPECTED = "expected"
#: reference arithmetic the expected outputs come from
REFERENCE = "onnxruntime, graph optimizations off (QDQ ops run as written around float ops)"
#: what may stay as a conformance file: arrays only, bounded
MAX_INPUTS = 64


def input_key(i: int) -> str:
    return f"input_{i}"


@dataclass(frozen=True)
class ArtifactConformance:
    """One artifact's verdict on this device. ``passed`` None: not checked (no data, or cannot run here)."""

    branch: str
    artifact: str
    runtime: str
    precision: str
    inputs: int
    max_abs_delta: float | None
    tolerance: float | None
    passed: bool | None
    detail: str
    #: the INT8 pair-sum bound: re-derived from the model file when onnx is installed, else as the manifest records it
    saturation: str = "n/a"


@dataclass(frozen=True)
class ConformanceReport:
    bundle_id: str
    device: dict[str, Any]
    artifacts: tuple[ArtifactConformance, ...]

    @property
    def checked(self) -> list[ArtifactConformance]:
        return [a for a in self.artifacts if a.passed is not None]

    @property
    def passed(self) -> bool:
        """True when at least one artifact was checked and every checked artifact passed."""
        return bool(self.checked) and all(a.passed for a in self.checked)

    def failures(self) -> list[ArtifactConformance]:
        return [a for a in self.artifacts if a.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {"bundle_id": self.bundle_id, "passed": self.passed, "device": self.device,
                "artifacts": [asdict(a) for a in self.artifacts]}


def encode(inputs: Sequence[np.ndarray], expected: np.ndarray) -> bytes:
    """The conformance file's bytes: a zip of ``.npy`` arrays with fixed timestamps (same arrays, same bytes)."""
    buf = io.BytesIO()
    arrays = {input_key(i): np.ascontiguousarray(x) for i, x in enumerate(inputs)}
    arrays[EXPECTED] = np.ascontiguousarray(expected, dtype=np.float32)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)
    return buf.getvalue()


def load(bundle: Bundle, art: Artifact, name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Golden inputs and expected outputs of an artifact, checksum-verified, no pickle."""
    path = bundle.verified_path(art.files[ROLE])
    try:
        with np.load(path, allow_pickle=False) as z:
            n = int(art.options.get(ROLE, {}).get("inputs", 0))
            if not 0 < n <= MAX_INPUTS or set(z.files) != {EXPECTED, *(input_key(i) for i in range(n))}:
                raise BundleFormatError(f"artifact {name!r}: conformance file does not hold {n} inputs and "
                                        f"'{EXPECTED}' (has {sorted(z.files)[:8]})")
            inputs = [z[input_key(i)] for i in range(n)]
            expected = np.asarray(z[EXPECTED], np.float64).reshape(n, -1)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise BundleFormatError(f"artifact {name!r}: unreadable conformance file ({exc})") from None
    return inputs, expected


def check_artifact(bundle: Bundle, branch: str, name: str, *, device: str = "cpu",
                   threads: int | None = None) -> ArtifactConformance:
    """Run one ONNX artifact's golden inputs (pixel branch, or a semantic image classifier) through the runtime
    ``detect()`` would use, on this device."""
    spec = bundle.manifest.branch(branch)
    assert spec is not None
    art = spec.artifacts[name]
    info = art.options.get(ROLE)

    saturation, can_saturate = _saturation(bundle, art)

    def verdict(inputs: int, delta: float | None, tol: float | None, passed: bool | None, detail: str):
        if can_saturate and passed is not False:  # golden outputs cannot see a kernel this device does not have
            passed, detail = False, f"{saturation}; {detail}"
        return ArtifactConformance(branch, name, art.runtime, art.precision, inputs, delta, tol, passed, detail,
                                   saturation)

    if ROLE not in art.files or not isinstance(info, dict):
        return verdict(0, None, None, None, "no conformance data in this bundle")
    tol = float(info.get("tolerance", float("nan")))
    if not np.isfinite(tol) or tol < 0:
        raise BundleFormatError(f"artifact {name!r}: conformance tolerance must be a finite number >= 0")
    try:
        inputs, expected = load(bundle, art, name)
    except BundleFormatError as exc:
        return verdict(0, None, tol, False, str(exc))
    try:
        rt = _open(bundle, branch, name, device, threads)
    except AlignGeminiError as exc:
        return verdict(len(inputs), None, tol, None, f"cannot run here: {exc}")
    try:
        got = np.concatenate([np.asarray(rt.run_tensor(x), np.float64).reshape(1, -1) for x in inputs])
    finally:
        rt.close()
    if got.shape != expected.shape:
        return verdict(len(inputs), None, tol, False, f"outputs {got.shape}, golden outputs {expected.shape}")
    delta = np.abs(got - expected)
    worst = float(np.max(delta)) if np.all(np.isfinite(delta)) else float("inf")
    ok = worst <= tol
    detail = (f"max |Δ| {worst:.3g} <= {tol:.3g} on {len(inputs)} golden inputs" if ok else
              f"max |Δ| {worst:.3g} > tolerance {tol:.3g} on input {int(np.argmax(np.max(np.nan_to_num(delta, nan=np.inf), axis=1)))}: "
              f"this device does not compute what the exporter's reference arithmetic computes")
    return verdict(len(inputs), worst, tol, ok, detail)


def _open(bundle: Bundle, branch: str, name: str, device: str, threads: int | None) -> TensorRuntime:
    from aligngemini_sdk.runtimes import open_pixel, open_semantic

    m = bundle.manifest
    rt = (open_pixel(bundle, m.pixel, device=device, threads=threads, precision=name) if branch == "pixel" and m.pixel
          else open_semantic(bundle, m.semantic, device=device, threads=threads, precision=name) if m.semantic
          else None)
    if not isinstance(rt, TensorRuntime):
        raise RuntimeUnavailableError(f"{branch}/{name} does not run a model on prepared tensors")
    return rt


def _saturation(bundle: Bundle, art: Artifact) -> tuple[str, bool]:
    """(what the INT8 pair-sum bound says, whether some CPU kernel can saturate). A device with VNNI passes the
    golden outputs of a file that saturates on AVX2 CPUs, so the bound is re-derived from the verified model bytes
    where the ``onnx`` package is installed (``[export]``), and read from the manifest otherwise."""
    if art.precision != "int8" or art.runtime != "onnxruntime":
        return "n/a", False
    recorded = art.options.get("calibration", {}).get("int8_safety")
    try:
        import onnx  # noqa: F401

        from aligngemini_sdk.export.saturation import prove_file
    except ImportError:
        if isinstance(recorded, dict):
            return (f"recorded {'safe' if recorded.get('safe') else 'CAN SATURATE'} (not re-derived: onnx is not "
                    "installed)"), not recorded.get("safe")
        return "unproven: the manifest records no bound and onnx is not installed to derive it", False
    proof = prove_file(bundle.verified_path(art.files["model"]))
    if proof.safe:
        return f"re-derived from the file: no kernel can saturate ({len(proof.nodes)} nodes)", False
    return f"re-derived from the file: {proof.reason()}", True


def verify_bundle(bundle: Bundle, *, device: str = "cpu", threads: int | None = None) -> ConformanceReport:
    """Check the golden outputs of every pixel artifact and every ONNX semantic artifact on this device (checksums
    first)."""
    import onnxruntime

    from aligngemini_sdk.device import cpu_info

    bundle.verify()
    m = bundle.manifest
    names = [("pixel", n) for n in (m.pixel.artifacts if m.pixel else {})]
    names += [("semantic", n) for n, a in (m.semantic.artifacts.items() if m.semantic else ()) if a.runtime == "onnxruntime"]
    checks = tuple(check_artifact(bundle, branch, name, device=device, threads=threads) for branch, name in names)
    dev = {"cpu": cpu_info(), "onnxruntime": onnxruntime.__version__, "device": device, "threads": threads}
    return ConformanceReport(bundle.manifest.bundle_id, dev, checks)
