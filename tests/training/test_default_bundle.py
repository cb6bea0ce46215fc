"""The embedded default bundle is a trained model that passed its INT8 gate, with a model card; the recipe's
data split is fixed and keeps test and unseen-generator images out of training."""

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
    b = Bundle.open(default_bundle_path())
    m = b.manifest
    assert not m.placeholder
    gate = m.pixel.validation["artifacts"]["int8"]
    assert gate["passed"] and gate["agreement"] >= 0.98
    assert m.pixel.validation["reference"]["auc"] >= 0.85
    assert m.pixel.default_artifact == "int8"
    assert sum(f.bytes for f in m.pixel.artifacts["int8"].files.values()) < 4_000_000  # "a few MB at most"
    card = b.model_card()
    assert card and "Known limits" in card and "not the AlignGemini pixel expert" in card
    # trained by the recipe's default command, which strips the class-coded frames (chosen by training/cv.py)
    prov = m.provenance["pixel"]
    assert prov["recipe"] == "training/train_default.py" and prov["seed"] == 0 and prov["strip_frames"] is True
    assert "Frames were stripped before cropping" in card
    assert set(b.verify().values()) == {"ok"}


def test_default_int8_takes_the_crops_own_bytes():
    """The shipped static-INT8 model folded mean/std into its first Conv: the SDK hands it the crop (plus the
    one-pixel bottom/right border its stem's "same" padding became). It replaced the quantized-input file
    because it passed the same gate and came out no further from FP32 on the label-free search split."""
    det = Detector()
    d = det.pixel.describe()
    assert d["input_dtype"] == "uint8" and d["input_quantization"]["method"] == "copy"
    assert d["input_quantization"]["pad"] == [0, 0, 1, 1]
    gate = det.bundle.manifest.pixel.validation["artifacts"]["int8"]
    assert gate["passed"] and gate["search_mean_abs_dp"]["pixels"] <= gate["search_mean_abs_dp"]["quantized"]


def test_detector_with_no_arguments_uses_the_default():
    det = Detector()
    assert det.bundle.manifest.bundle_id == Bundle.open(default_bundle_path()).manifest.bundle_id
    r = det.detect(fake_images(1)[0])
    assert r.pixel.ran and r.semantic.skip_reason == "unavailable"


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


def test_shipped_bundle_reproduces_its_recorded_held_aside_metrics():
    """``aligngemini eval`` on the committed test split gives the numbers the export gate recorded (and the
    README quotes): the bundle, the split and the evaluation path agree."""
    from aligngemini_sdk.evaluate import evaluate

    m = Bundle.open(default_bundle_path()).manifest
    recorded = m.pixel.validation["artifacts"]["int8"]
    rep = evaluate(str(default_bundle_path()), str(ROOT / "training" / "splits" / "test.csv"), workers=1)
    assert rep.n_errors == 0 and rep.overall["n"] == m.pixel.validation["n_val"]
    assert abs(rep.overall["balanced_accuracy"] - recorded["balanced_accuracy"]) < 0.01
    assert abs(rep.overall["auc"] - recorded["auc"]) < 0.01


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
    import numpy as np

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


def test_default_int8_cannot_saturate_any_cpu_kernel_and_matches_its_reference_arithmetic():
    """The shipped INT8 file passes the pair-sum bound (uint8 weights: widened before multiplying), the manifest
    says so, and on this CPU its optimized kernels stay within the requantization-rounding distance of the graph's
    reference arithmetic on the held-aside split (a saturating kernel moved P(fake) by up to 0.8 and flipped 16)."""
    from aligngemini_sdk.export.saturation import prove_file
    from aligngemini_sdk.image import load_image
    from aligngemini_sdk.runtimes.onnxruntime import OnnxRuntimePixel

    b = Bundle.open(default_bundle_path())
    art = b.manifest.pixel.artifacts["int8"]
    assert prove_file(b.verified_path(art.files["model"])).safe
    assert art.options["calibration"]["int8_safety"]["safe"] and art.options["calibration"]["weights"] == "u8"
    rows = (ROOT / "training" / "splits" / "test.csv").read_text().splitlines()[1:]
    images = [load_image((ROOT / "training" / "splits" / r.split(",")[0]).resolve()).rgb for r in rows]
    from aligngemini_sdk.quantized_input import QuantizedInput

    q = QuantizedInput.from_options(art.options)
    path = b.verified_path(art.files["model"])
    opt = OnnxRuntimePixel(path, b.manifest.pixel.input, device="cpu", input_quantization=q).predict(images)
    ref = OnnxRuntimePixel(path, b.manifest.pixel.input, device="cpu", input_quantization=q,
                           reference_arithmetic=True).predict(images)
    t = b.manifest.pixel.threshold
    assert len(images) == 148 and np.mean(np.abs(opt - ref)) < 0.005
    assert np.sum((opt > t) != (ref > t)) <= 1  # one image sits 0.002 from the threshold: a rounding step apart
