"""The embedded default bundle (the in-the-wild two-view detector) is trained, gated, documented and reproduces its
recorded figures; the previous default's recipe (training/train_default.py, the compact crop expert) keeps its
fixed split and its data hygiene."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aligngemini_sdk import Bundle, Detector, default_bundle_path
from tests.conftest import CNN_FAKE, CNN_REAL, ROOT, SHARED, fake_images, real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_default_bundle_is_trained_gated_and_documented():
    """The in-the-wild default: two views on one pretrained backbone, each gated, fused logistically, deciding at
    the fpr5 operating point; within the 15 MB budget; recipe and choice recorded; a model card with its limits."""
    b = Bundle.open(default_bundle_path())
    m = b.manifest
    assert not m.placeholder and m.name == "aligngemini-default-wild"
    for spec in (m.pixel, m.semantic):
        gate = spec.validation["artifacts"]["fp16w"]
        assert gate["passed"] and gate["agreement"] >= 0.98 and spec.default_artifact == "fp16w"
    assert m.fusion.rule == "logistic" and m.fusion.default_operating_point == "fpr5"
    assert set(m.fusion.operating_points) == {"fpr1", "fpr5", "fpr10"}
    for point in m.fusion.operating_points.values():  # chosen on out-of-fold development scores
        assert point.measured["fpr"] <= point.target_fpr and point.measured["n_real"] >= 100
    assert sum(f.bytes for f in m.all_files().values()) <= 15_000_000
    prov = m.provenance["semantic"]
    assert prov["recipe"] == "training/train_semantic.py" and prov["choice"] == "G"
    card = b.model_card()
    assert card and "Known limits" in card and "not** the AlignGemini pixel expert" in card
    assert set(b.verify().values()) == {"ok"}


def test_default_branches_see_a_native_crop_and_the_whole_image():
    """The pixel branch reads an unresampled 224 centre crop (generator artifacts), the semantic branch the whole
    image resized to 224 (content and style); with two ONNX sessions on the same cores neither spins."""
    det = Detector()
    px, sem = det.bundle.manifest.pixel.input, det.bundle.manifest.semantic.input
    assert (px.crop, px.resize, px.height) == ("center", "none", 224)
    assert (sem.crop, sem.resize, sem.height) == ("none", "exact", 224)
    assert det.pixel.describe()["spinning"] is False and det.semantic.describe()["spinning"] is False


def test_default_runs_its_two_branches_together_with_the_answers_of_each_alone():
    """On two or more cores the whole-image branch runs beside the crop branch (its answer always counts under the
    logistic fusion), each session on half the cores; the probabilities are each runtime's own, single or batched."""
    import os

    from aligngemini_sdk.decode_plan import decode_for_branches

    images = fake_images(2) + real_images(2)
    with Detector() as det:
        cores = len(os.sched_getaffinity(0))
        assert (det.info()["branches_together"], det.concurrency.together) == (cores >= 2, cores >= 2)
        single = [det.detect(p) for p in images]
        batch = det.detect_batch(images)
        for path, r, b in zip(images, single, batch):
            inputs = decode_for_branches(path.read_bytes(), det.decode_plan)  # what each branch reads of the file
            assert r.semantic.ran and r.pixel.ran
            assert r.pixel.probability == det.pixel.predict_one(inputs.for_branch("pixel"))
            assert r.semantic.probability == det.semantic.predict_one(inputs.for_branch("semantic"))
            assert (b.is_fake, b.score) == (r.is_fake, r.score)
        assert det.detect(images[0], power="low").semantic.skip_reason == "power"  # the planner still decides


@pytest.fixture
def two_cores(monkeypatch):
    """The detector plans its sessions for a 2-core CPU (CI's), whatever this machine has."""
    from aligngemini_sdk import detector

    real = detector.cpu_info()
    monkeypatch.setattr(detector, "cpu_info", lambda: {**real, "usable_cores": 2})


def test_a_call_without_the_semantic_branch_runs_the_crop_branch_on_every_core(two_cores):
    """Beside the whole-image branch the crop branch has half the cores; a call the planner answers without it (here a
    budget it has no estimate for) runs the crop branch on a session of its own on every core, opened with the
    Detector when the options set a budget, and answers what the half-core session answers."""
    from aligngemini_sdk.decode_plan import decode_for_branches

    with Detector(budget_ms=1000.0) as det:
        assert det.concurrency.together and det.pixel.describe()["threads"] == 1
        assert det.info()["pixel_alone"]["threads"] is None  # ONNX Runtime's default: every core
        assert det.pixel_alone is not det.pixel and det.pixel_alone.describe()["spinning"] is False
        for path in fake_images(2) + real_images(2):
            r = det.detect(path)
            inputs = decode_for_branches(path.read_bytes(), det.decode_plan)
            assert (r.semantic.ran, r.semantic.skip_reason) == (False, "budget")
            # equal here; allowed float noise elsewhere (benchmarks/decision_margins.py: decisions sit >= 5e-5 away)
            assert r.pixel.probability == pytest.approx(det.pixel.predict_one(inputs.for_branch("pixel")), abs=1e-6)
        assert det.detect_batch(fake_images(2), budget_ms=1000.0)[1].semantic.skip_reason == "budget"


def test_without_a_budget_the_every_core_session_opens_when_first_needed(two_cores):
    """No budget in the options: nothing is opened until a call runs the crop branch alone (or warmup() runs);
    ``info()`` says which."""
    with Detector() as det:
        assert det.info()["pixel_alone"] == "not opened yet"
        assert det.detect(real_images(1)[0]).semantic.ran and det.info()["pixel_alone"] == "not opened yet"
        assert not det.detect(real_images(1)[0], budget_ms=1000.0).semantic.ran
        assert det.info()["pixel_alone"]["threads"] is None
    with Detector() as det:
        det.warmup(runs=1)
        assert det.info()["pixel_alone"]["threads"] is None


def test_a_semantic_branch_that_does_not_load_leaves_every_core_to_the_crop_branch(two_cores):
    with Detector(semantic_precision="int4") as det:  # the default has no int4 artifact: reported, not fatal
        assert det.semantic is None and "int4" in det.semantic_error
        assert not det.concurrency.together and "did not load" in det.concurrency.reason
        assert det.pixel.describe()["threads"] is None and det.info()["pixel_alone"] == "the pixel session"
        assert det.pixel_alone is det.pixel
        assert det.detect(real_images(1)[0]).semantic.skip_reason == "unavailable"


def test_eight_callers_sharing_the_default_get_its_serial_answers():
    """Callers' threads, the semantic branch's workers and the JPEG decode workers together: same scores as one
    caller, on camera JPEGs (reduced + region decodes) and PNGs alike."""
    from concurrent.futures import ThreadPoolExecutor

    cameras = sorted((SHARED / "wild" / "images" / "real" / "drewnoakes__metadata-extractor-images").glob("*Canon*"))
    images = (cameras[:4] + fake_images(2) + real_images(2)) * 2
    with Detector() as det:
        serial = [det.detect(p).score for p in images]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda p: det.detect(p).score, images)) == serial


def test_detector_with_no_arguments_uses_the_default():
    det = Detector()
    assert det.bundle.manifest.bundle_id == Bundle.open(default_bundle_path()).manifest.bundle_id
    r = det.detect(fake_images(1)[0])
    assert r.pixel.ran and r.semantic.ran  # logistic fusion: the whole-image view always counts
    assert det.fusion.spec.threshold == det.bundle.manifest.fusion.operating_points["fpr5"].fusion


def test_cli_detect_without_bundle_gives_a_verdict():
    r = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "detect", str(real_images(1)[0]), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["label"] in ("real", "fake") and rec["bundle_id"].startswith("ag-")


def test_recipe_split_is_fixed_and_disjoint():
    from training.train_default import UNSEEN_CNN_FAMILIES, split_rows

    a, b = split_rows(SHARED), split_rows(SHARED)
    assert {k: [r["path"] for r in v] for k, v in a.items()} == {k: [r["path"] for r in v] for k, v in b.items()}
    paths = {k: {r["path"] for r in v} for k, v in a.items()}
    for x in paths:
        for y in paths:
            if x < y:
                assert not paths[x] & paths[y], (x, y)
    assert not any(r["family"] in UNSEEN_CNN_FAMILIES for r in a["train"] + a["tune"] + a["test"])
    assert not any(Path(r["path"]).parts[2] == "cifake" for rows in a.values() for r in rows)


def test_committed_split_files_match_the_recipe_split():
    """training/splits/*.csv are what the recipe held aside; they must not drift from ``split_rows``."""
    from aligngemini_sdk.dataset import load_collection
    from training.train_default import split_rows

    splits = split_rows(SHARED)
    for name in ("test", "unseen"):
        committed = {s.path.resolve() for s in load_collection(ROOT / "training" / "splits" / f"{name}.csv")}
        assert committed == {Path(r["abs"]).resolve() for r in splits[name]}, name


def test_shipped_bundle_reproduces_its_recorded_final_test_figures(tmp_path):
    """``aligngemini eval`` on the final-test repositories gives, at each operating point, the false-positive and
    detection rates benchmarks/reports/wild_default records (and README quotes): bundle, split and evaluation
    path agree."""
    import csv

    from aligngemini_sdk.evaluate import evaluate

    report = json.loads((ROOT / "benchmarks" / "reports" / "wild_default" / "report.json").read_text())
    with open(ROOT / "training" / "splits" / "wild_groups.csv") as fh:
        final = [r for r in csv.DictReader(fh) if r["role"] == "final"]
    data = tmp_path / "final.csv"
    data.write_text("path,label,source\n" + "".join(f"{SHARED / r['path']},{r['label']},{r['source']}\n" for r in final))
    rep = evaluate(str(default_bundle_path()), str(data), provenance=False)
    assert rep.operating_points is not None and rep.n_errors == report["final"]["n_unreadable"]
    for name, recorded in report["final"]["points"].items():
        got = rep.operating_points[name]
        assert abs(got["fpr"] - recorded["real_fpr"]) < 1e-9 and abs(got["tpr"] - recorded["tpr"]) < 1e-9, name


def test_source_balanced_batches_make_the_paired_source_carry_no_label():
    """With class-balanced batches alone, "is a cnndetection image" predicts "fake" in this pool; the recipe's
    ``--sampling source`` gives the paired source the same share of reals and fakes."""
    import random

    from training.train_default import PAIRED_SOURCE, SAMPLERS, split_rows

    train = split_rows(SHARED)["train"]

    def shares(kind: str) -> tuple[float, float]:
        draw, rng = SAMPLERS[kind](train), random.Random(0)
        real, fake = [], []
        for _ in range(400):
            r, f = draw(rng, 12)
            real += r
            fake += f
        assert {x["label"] for x in real} == {"real"} and {x["label"] for x in fake} == {"fake"}
        return tuple(sum(x["source"] == PAIRED_SOURCE for x in rows) / len(rows) for rows in (real, fake))

    real_c, fake_c = shares("class")
    assert fake_c - real_c > 0.3  # the shortcut the source sampler removes
    real_s, fake_s = shares("source")
    assert abs(real_s - fake_s) < 0.03


def test_strip_frame_cuts_the_class_coded_border_to_whole_jpeg_blocks():
    """The shared cnndetection canvases carry a border whose colour is the label (one grey for every real, a
    colour per GAN for fakes). ``strip_frame`` keeps only content, cut at 8x8 JPEG-block boundaries so no block
    that mixed border into content survives; images without a frame pass through untouched."""

    from training.train_default import load_rgb, strip_frame

    corners = {}
    for label, folder in (("real", CNN_REAL), ("fake", CNN_FAKE)):
        for p in sorted(folder.iterdir())[:4]:
            img = load_rgb(str(p))
            out = strip_frame(img)
            assert np.shares_memory(out, img)  # a view: a crop, no resampling
            top, left = divmod((out.__array_interface__["data"][0] - img.__array_interface__["data"][0]) // 3,
                               img.shape[1])
            assert top % 8 == 0 and left % 8 == 0 and 64 <= out.shape[0] < img.shape[0]
            frame = np.abs(out.astype(int) - img[0, 0].astype(int)).max(axis=2) <= 24
            for edge in (frame[0], frame[-1], frame[:, 0], frame[:, -1]):
                assert not edge.all()  # no border row or column left
            corners.setdefault(label, set()).add(tuple(int(v) // 32 for v in img[0, 0]))
    assert not corners["real"] & corners["fake"]  # the border colour alone tells the classes apart
    kodak = load_rgb(str(real_images(1)[0]))
    assert strip_frame(kodak) is kodak
