"""``aligngemini verify``: every exported artifact carries golden inputs and outputs; a device that computes
something else fails, naming the artifact, even when the bundle's checksums were made to match."""

import io
import json
import shutil
import zipfile

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from aligngemini_sdk import Bundle
from aligngemini_sdk.bundle import sha256_file
from aligngemini_sdk.conformance import EXPECTED, ROLE, encode, verify_bundle
from aligngemini_sdk.detector import default_bundle_path
from aligngemini_sdk.export.bundle_writer import file_entry
from tests.conftest import needs_emulated_arm64, needs_emulated_avx2, on_emulated_arm64, on_emulated_avx2
from tests.sdk.test_cli import cli

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def _rewrite_entry(root, branch, artifact, role):
    """Make the manifest agree with a changed file (what a careless or hostile repackaging does)."""
    m = json.loads((root / "manifest.json").read_text())
    files = m["branches"][branch]["artifacts"][artifact]["files"]
    e = file_entry(root, files[role]["path"])
    files[role].update(sha256=e.sha256, bytes=e.bytes)
    (root / "manifest.json").write_text(json.dumps(m))


def test_every_exported_artifact_carries_golden_outputs_that_pass_here(ladeda_bundle):
    b = Bundle.open(ladeda_bundle)
    art = b.manifest.pixel.artifacts["fp32"]
    info = art.options[ROLE]
    assert ROLE in art.files and info["inputs"] >= 3 and info["tolerance"] >= 1e-3
    rep = verify_bundle(b)
    assert rep.passed and [a.artifact for a in rep.checked] == ["fp32"]
    assert rep.checked[0].max_abs_delta <= rep.checked[0].tolerance


def test_the_default_bundle_verifies_on_this_cpu_from_the_cli():
    r = cli("verify", "--json")
    rep = json.loads(r.stdout)
    assert rep["passed"] and rep["bundle_id"] == Bundle.open(default_bundle_path()).manifest.bundle_id
    assert {(a["branch"], a["artifact"]) for a in rep["artifacts"]} == {("pixel", "fp16w"), ("semantic", "fp16w")}
    assert all(a["passed"] and a["inputs"] >= 6 for a in rep["artifacts"])
    assert rep["device"]["cpu"]["model"]  # the fingerprint says which device passed



@needs_emulated_avx2
@pytest.mark.parametrize("which", ["default", "int8"])
def test_bundles_verify_on_an_emulated_avx2_cpu_without_vnni(which, int8_bundle):
    """The golden outputs were computed here (AVX-512 VNNI or whatever CI runs on); an AVX2-only CPU, whose u8 x s8
    kernel saturates pair sums, must reproduce them: the INT8 artifact's 7-bit weights are proved unable to saturate,
    and the default's FP16-weight artifacts compute in float."""
    bundle = [] if which == "default" else [str(int8_bundle)]
    rep = json.loads(on_emulated_avx2("-m", "aligngemini_sdk.cli", "verify", *bundle, "--json").stdout)
    assert rep["device"]["cpu"]["features"] and "avx512_vnni" not in rep["device"]["cpu"]["features"]
    assert rep["passed"] and rep["artifacts"] and all(a["passed"] for a in rep["artifacts"])
    if which == "int8":
        assert [a["precision"] for a in rep["artifacts"]] == ["int8"]

@needs_emulated_arm64
@pytest.mark.parametrize("which", ["default", "int8"])
def test_bundles_verify_on_an_emulated_arm_cpu(which, int8_bundle):
    """A phone-class 64-bit ARM CPU (Neoverse-N1: NEON and dot product), running aarch64 builds of numpy, OpenCV and
    ONNX Runtime at this venv's versions: other kernels entirely, the same golden outputs within tolerance."""
    bundle = [] if which == "default" else [str(int8_bundle)]
    rep = json.loads(on_emulated_arm64("-m", "aligngemini_sdk.cli", "verify", *bundle, "--json").stdout)
    assert rep["device"]["cpu"]["arch"] == "aarch64" and "asimddp" in rep["device"]["cpu"]["features"]
    assert rep["passed"] and rep["artifacts"] and all(a["passed"] for a in rep["artifacts"])
    if which == "int8":
        assert [a["precision"] for a in rep["artifacts"]] == ["int8"]


def test_changed_model_bytes_with_a_matching_manifest_fail_naming_the_artifact(tmp_path, int8_bundle):
    root = tmp_path / "b"
    shutil.copytree(int8_bundle, root)
    model = root / "pixel" / "model.int8.onnx"
    proto = onnx.load(str(model))
    # the last layer's 8-bit weights, mirrored around their zero point: a different model, same shapes and types
    w = next(i for i in reversed(proto.graph.initializer)
             if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(i.dims) > 1)
    q = numpy_helper.to_array(w)
    w.CopyFrom(numpy_helper.from_array((255 - q) if q.dtype == np.uint8 else -q, w.name))
    onnx.save(proto, str(model))
    _rewrite_entry(root, "pixel", "int8", "model")
    Bundle.open(root).verify()  # checksums now agree: only the golden outputs can tell
    r = cli("verify", root, check=False)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "FAIL pixel/int8" in r.stdout and "tolerance" in r.stdout


def test_changed_golden_outputs_with_a_matching_manifest_fail(bundle_copy):
    b = Bundle.open(bundle_copy)
    art = b.manifest.pixel.artifacts["fp32"]
    path = b.verified_path(art.files[ROLE])
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n = art.options[ROLE]["inputs"]
    expected = arrays.pop(EXPECTED) + 0.5
    path.write_bytes(encode([arrays[f"input_{i}"] for i in range(n)], expected))
    _rewrite_entry(bundle_copy, "pixel", "fp32", ROLE)
    rep = verify_bundle(Bundle.open(bundle_copy))
    assert not rep.passed and rep.failures()[0].artifact == "fp32"
    assert rep.failures()[0].max_abs_delta == pytest.approx(0.5, abs=1e-3)


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_conformance_file_holding_a_pickle_is_refused_not_loaded(bundle_copy, tmp_path):
    b = Bundle.open(bundle_copy)
    art = b.manifest.pixel.artifacts["fp32"]
    path = b.verified_path(art.files[ROLE])
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[EXPECTED] = np.array([_Payload(tmp_path / "ran")], dtype=object)  # right keys, a pickled payload
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=True)
    path.write_bytes(buf.getvalue())
    _rewrite_entry(bundle_copy, "pixel", "fp32", ROLE)
    r = cli("verify", bundle_copy, check=False)
    assert r.returncode == 4 and "FAIL pixel/fp32" in r.stdout and "unreadable conformance file" in r.stdout
    assert not (tmp_path / "ran").exists()  # nothing was unpickled


def test_a_bundle_without_golden_outputs_is_not_vouched_for(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    art = m["branches"]["pixel"]["artifacts"]["fp32"]
    (bundle_copy / art["files"].pop(ROLE)["path"]).unlink()
    art["options"].pop(ROLE)
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    assert sha256_file(bundle_copy / "manifest.json")  # still a readable bundle
    r = cli("verify", bundle_copy, "--json", check=False)
    assert r.returncode == 4 and not json.loads(r.stdout)["passed"]
    assert json.loads(r.stdout)["artifacts"][0]["detail"] == "no conformance data in this bundle"
