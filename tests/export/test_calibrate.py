"""The two-branch design without a VLM: a whole-image ONNX classifier as the semantic branch, a logistic fusion
learned on labelled data, and operating points for target real-photo false-positive rates."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from aligngemini_sdk import Bundle, Detector, DetectorOptions
from aligngemini_sdk.conformance import verify_bundle
from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.evaluate import evaluate
from aligngemini_sdk.export.calibrate import calibrate, threshold_for_fpr
from aligngemini_sdk.export.pixel import GateThresholds, PixelExportConfig, export_pixel
from aligngemini_sdk.fpr_bound import fpr_upper_bound
from aligngemini_sdk.fusion import Fusion
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from tests.conftest import CNN_FAKE, CNN_REAL, fake_images, real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

WHOLE_IMAGE = InputSpec(height=64, width=64, crop="none", resize="exact", mean=IMAGENET_MEAN, std=IMAGENET_STD)


class GlobalLook(nn.Module):
    """A small whole-image classifier (random weights): pooled colour statistics -> one fake-logit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def onnx_two_branch(tmp_path_factory, ladeda_bundle, collection):
    out = tmp_path_factory.mktemp("onnx-two-branch") / "bundle"
    shutil.copytree(ladeda_bundle, out)
    torch.manual_seed(0)
    export_pixel(PixelExportConfig(arch="module", module=GlobalLook(), out=out, branch="semantic", input=WHOLE_IMAGE,
                                   precisions=("fp32",), val=str(collection), gate=GateThresholds()))
    return out


def test_a_whole_image_classifier_exports_into_the_semantic_branch(onnx_two_branch, ladeda_bundle):
    m = Bundle.open(onnx_two_branch).manifest
    assert m.pixel is not None and m.semantic is not None and m.semantic.input == WHOLE_IMAGE
    assert [a.runtime for a in m.semantic.artifacts.values()] == ["onnxruntime"] and not m.semantic.is_vlm
    assert m.semantic.validation["artifacts"]["fp32"]["passed"]
    assert m.name == Bundle.open(ladeda_bundle).manifest.name  # the pixel bundle's identity is kept
    rep = verify_bundle(Bundle.open(onnx_two_branch))  # golden outputs for both branches' ONNX artifacts
    assert rep.passed and {(a.branch, a.artifact) for a in rep.artifacts} == {("pixel", "fp32"), ("semantic", "fp32")}


def test_calibration_learns_a_logistic_fusion_and_operating_points(onnx_two_branch, collection, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(onnx_two_branch, b)
    before = Bundle.open(b).manifest
    m = calibrate(b, str(collection), fprs=(0.01, 0.05, 0.10), default="fpr5", fusion="logistic", confidence=None)
    assert m.bundle_id == before.bundle_id and m.fusion.rule == "logistic"  # the model files are untouched
    assert set(m.fusion.operating_points) == {"fpr1", "fpr5", "fpr10"} and m.fusion.default_operating_point == "fpr5"
    thresholds = [m.fusion.operating_points[n].fusion for n in ("fpr1", "fpr5", "fpr10")]
    assert thresholds == sorted(thresholds, reverse=True)  # a lower false-positive rate needs a higher threshold
    for p in m.fusion.operating_points.values():
        assert p.measured["fpr"] <= p.target_fpr and p.measured["in_sample"]
    assert json.loads((b / "manifest.json").read_text())["requires"] == ["operating-points", "semantic-onnx"]


def test_the_detector_runs_both_branches_at_an_operating_point(onnx_two_branch, collection, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(onnx_two_branch, b)
    calibrate(b, str(collection), default="fpr5", fusion="logistic", confidence=None)
    det = Detector(b)
    m = det.bundle.manifest
    assert det.fusion.spec.threshold == m.fusion.operating_points["fpr5"].fusion  # the bundle's default point
    img = real_images(1)[0]
    r = det.detect(img)
    assert r.pixel.ran and r.semantic.ran and r.semantic.artifact == "fp32"  # logistic: the semantic view matters
    assert (r.is_fake, r.score) == Fusion.of(m, "fpr5")(r.pixel.probability, r.semantic.probability)
    strict = Detector(b, DetectorOptions(operating_point="fpr1"))
    assert strict.fusion.spec.threshold >= det.fusion.spec.threshold
    with pytest.raises(ValueError, match="no operating point 'fpr50'"):
        Detector(b, DetectorOptions(operating_point="fpr50"))
    rep = evaluate(str(b), str(collection))
    assert rep.operating_points is not None and set(rep.operating_points) == {"fpr1", "fpr5", "fpr10"}
    point = rep.operating_points["fpr5"]
    assert point["fpr"] <= 0.05  # the data it was chosen on; with its 12 real images that promises little beyond them:
    assert point["fpr_upper_95"] == fpr_upper_bound(round(point["fpr"] * point["n_real"]), point["n_real"]) > 0.2
    probs = [det.detect(p).score for p in fake_images(2)]
    assert all(np.isfinite(probs))


def test_the_cli_calibrates_and_detects_at_a_named_point(onnx_two_branch, collection, tmp_path):
    import subprocess
    import sys

    b = tmp_path / "b"
    shutil.copytree(onnx_two_branch, b)
    run = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "export", "calibrate", str(b), "--data",
                          str(collection), "--fusion", "logistic", "--fpr", "5,10", "--default", "fpr10",
                          "--confidence", "0"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["fusion"] == "logistic" and set(summary["operating_points"]) == {"fpr5", "fpr10"}
    run = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "detect", str(real_images(1)[0]), "--bundle",
                          str(b), "--operating-point", "fpr5", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["branches"]["semantic"]["ran"]
    info = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "info", str(b), "--json"],
                          capture_output=True, text=True)
    summary = json.loads(info.stdout)
    assert summary["default_operating_point"] == "fpr10"
    for point in summary["operating_points"].values():  # the bound its 12 real images support, stated
        m = point["measured"]
        assert m["confidence"] is None and point["fpr_upper_95"] == m["fpr_upper"] > point["target_fpr"]
        assert point["fpr_upper_95"] == fpr_upper_bound(round(m["fpr"] * m["n_real"]), m["n_real"], 0.95)


def test_too_few_real_images_for_a_kept_rate_are_refused_before_any_image_runs(onnx_two_branch, collection, tmp_path):
    """By default a point must keep its rate with 95 % confidence; 12 real images support none of fpr1/5/10, and the
    refusal names what each needs. It comes before any image is run (the unreadable fake here would fail a run)
    and nothing is written."""
    b, data = tmp_path / "b", tmp_path / "data"
    shutil.copytree(onnx_two_branch, b)
    shutil.copytree(collection, data, symlinks=True)
    (data / "fake" / "unreadable.jpg").write_bytes(b"not an image")
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(ExportError, match=r"too few real images \(12\).*fpr1 needs 299, fpr5 needs 59, fpr10 needs 29"):
        calibrate(b, str(data), fusion="logistic")
    assert (b / "manifest.json").read_bytes() == before


def test_points_kept_with_confidence_are_stricter_and_record_their_bound(onnx_two_branch, tmp_path):
    """200 real photos: at 95 % confidence fpr5 and fpr10 may call only as many fake as keeps the bound within the
    target, so their thresholds sit at or above the empirical quantile's, whose own bound exceeds the target."""
    data = tmp_path / "data"
    for label, src, n in (("real", CNN_REAL, 200), ("fake", CNN_FAKE, 40)):
        (data / label).mkdir(parents=True)
        for p in sorted(src.iterdir())[:n]:
            (data / label / p.name).symlink_to(p)
    kept, empirical = tmp_path / "kept", tmp_path / "empirical"
    for out in (kept, empirical):
        shutil.copytree(onnx_two_branch, out)
    m = calibrate(kept, str(data), fprs=(0.05, 0.10), fusion="logistic")
    e = calibrate(empirical, str(data), fprs=(0.05, 0.10), fusion="logistic", confidence=None)
    assert m.fusion.weights == e.fusion.weights  # the same fusion, fitted on the same scores
    for name, target in (("fpr5", 0.05), ("fpr10", 0.10)):
        p, q = m.fusion.operating_points[name], e.fusion.operating_points[name]
        assert p.measured["n_real"] == 200 and p.measured["confidence"] == 0.95
        assert p.measured["fpr_upper"] <= target < q.measured["fpr_upper"]
        assert p.fusion >= q.fusion and p.measured["fpr"] <= q.measured["fpr"]


def test_bench_measures_the_onnx_semantic_branch_against_its_gate(onnx_two_branch):
    from aligngemini_sdk.bench import run_bench

    rep = run_bench(str(onnx_two_branch), warmup=1, runs=3, plots=False)
    rows = {r.key: r for r in rep.artifacts}
    assert rows["semantic/fp32"].status == "✅" and rows["semantic/fp32"].status_reason == "gate passed"
    assert rows["semantic/fp32"].runtime == "onnxruntime" and rows["semantic/fp32"].latency_ms is not None


def test_a_resizing_branch_can_declare_the_jpeg_dct_reduction(ladeda_bundle, collection, tmp_path):
    """Exported with ``jpeg_downscale="dct"``, the whole-image branch is gated on, and at run time reads, the JPEG
    decoded at a reduced DCT scale: what OpenCV's IMREAD_REDUCED_* gives, then its resize."""
    import cv2

    from aligngemini_sdk.decode_plan import reduction

    out = tmp_path / "bundle"
    shutil.copytree(ladeda_bundle, out)
    torch.manual_seed(0)
    dct = InputSpec(**{**WHOLE_IMAGE.__dict__, "jpeg_downscale": "dct"})
    export_pixel(PixelExportConfig(arch="module", module=GlobalLook(), out=out, branch="semantic", input=dct,
                                   precisions=("fp32",), val=str(collection), gate=GateThresholds()))
    m = Bundle.open(out).manifest
    assert m.semantic.input.jpeg_downscale == "dct" and "jpeg-dct-downscale" in m.to_dict()["requires"]
    photo = fake_images(1)[0]  # a large Stable Diffusion JPEG
    h, w = cv2.imread(str(photo)).shape[:2]
    denom = reduction(dct, w, h)
    assert denom > 1
    with Detector(out, DetectorOptions(device="cpu")) as det:
        r = det.detect(photo)
        assert r.extra["decode"].startswith(f"dct 1/{denom}")
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[denom]
        reduced = cv2.imread(str(photo), flag)[:, :, ::-1]
        assert r.semantic.probability == det.semantic.predict_one(np.ascontiguousarray(reduced))


def test_the_empirical_quantile_keeps_the_rank_the_recipes_have_always_used():
    """``confidence=None`` is the rank every recipe chose its thresholds by (the shipped default's among them), so a
    retrain gives the same thresholds."""
    import math

    rng = np.random.default_rng(0)
    for n in range(1, 400, 7):
        scores = rng.random(n)
        for fpr in (0.01, 0.05, 0.10, 0.3):
            rank = max(0, math.ceil((1.0 - fpr) * n) - 1)
            assert threshold_for_fpr(scores, fpr) == float(np.sort(scores)[rank])


def test_info_prints_a_manifests_implausible_measurements_without_trusting_them(onnx_two_branch, collection, tmp_path):
    """``measured`` is whatever the manifest says: strings, a billion images, a rate above one are printed as they
    are or as "?", with no bound computed from them, and ``info`` still succeeds."""
    import subprocess
    import sys

    b = tmp_path / "b"
    shutil.copytree(onnx_two_branch, b)
    calibrate(b, str(collection), fprs=(0.05, 0.10), fusion="logistic", confidence=None)
    raw = json.loads((b / "manifest.json").read_text())
    points = raw["fusion"]["operating_points"]
    points["fpr5"]["measured"] = {"fpr": "low", "n_real": 10**9, "tpr": [1], "confidence": "sure"}
    points["fpr10"]["measured"] = {"fpr": 1.5, "n_real": 100, "data": "x" * 50}
    (b / "manifest.json").write_text(json.dumps(raw))
    run = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "info", str(b)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "fpr5 (default): fusion" in run.stdout and "measured FPR ?" in run.stdout and "upper bound" not in run.stdout
    summary = json.loads(subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "info", str(b), "--json"],
                                        capture_output=True, text=True).stdout)
    assert [p["fpr_upper_95"] for p in summary["operating_points"].values()] == [None, None]


def test_the_cli_refuses_a_confidence_outside_0_to_100_percent(onnx_two_branch, collection):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "export", "calibrate", str(onnx_two_branch),
                          "--data", str(collection), "--confidence", "100"], capture_output=True, text=True)
    assert run.returncode == 2 and "a percent in [0, 100)" in run.stderr
