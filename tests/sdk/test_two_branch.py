"""Both branches for real: LaDeDa on ONNX Runtime + a tiny Gemma3 VLM on llama.cpp, fused with the OR rule.

Latencies are injected into the planner (device profile / tracker) so every skip reason is exercised
deterministically; the VLM itself always really runs when the planner says so.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from aligngemini_sdk import Bundle, Detector, DetectorOptions
from aligngemini_sdk.fusion import fuse
from tests.conftest import fake_images, real_images

pytestmark = [pytest.mark.gguf, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def det(two_branch_bundle):
    return Detector(two_branch_bundle, DetectorOptions(device="cpu", threads=2))


def force_pixel_threshold(det, t):
    """Move the pixel threshold so the pixel verdict is 'real' (t=1) or 'fake' (t=0) on any image."""
    import dataclasses

    from aligngemini_sdk.fusion import Fusion

    m = det.bundle.manifest
    m.pixel = dataclasses.replace(m.pixel, threshold=t)
    det.fusion = Fusion.of(m)  # the detector's fusion owns the thresholds it applies


def test_vlm_runs_when_pixel_says_real_and_result_is_or_fused(det):
    force_pixel_threshold(det, 1.0)  # pixel always 'real' -> the VLM can change the verdict
    r = det.detect(real_images(1)[0])
    assert r.semantic.ran and r.semantic.skip_reason is None
    assert 0.0 < r.semantic.probability < 1.0 and r.semantic.ms > 0 and r.semantic.artifact == "q4_k_m"
    m = det.bundle.manifest
    expected = fuse(m.fusion, r.pixel.probability, r.semantic.probability, 1.0, m.semantic.threshold)
    assert (r.is_fake, r.score) == expected
    assert r.total_ms >= r.pixel.ms + r.semantic.ms


def test_vlm_is_skipped_as_decided_when_pixel_says_fake(det):
    force_pixel_threshold(det, 0.0)  # pixel always 'fake': under OR the VLM cannot change the verdict
    r = det.detect(fake_images(1)[0])
    assert r.is_fake and not r.semantic.ran and r.semantic.skip_reason == "decided"
    force_pixel_threshold(det, 1.0)


def test_low_power_skips_vlm(det):
    force_pixel_threshold(det, 1.0)
    r = det.detect(real_images(1)[0], power="low")
    assert r.semantic.skip_reason == "power" and not r.semantic.ran


def test_budget_planner_uses_predicted_p90(det):
    force_pixel_threshold(det, 1.0)
    det.latency._samples.clear()
    det.latency.set_profile(det.semantic_key, 10_000.0)  # profile says the VLM takes 10 s here
    r = det.detect(real_images(1)[0], budget_ms=500)
    assert r.semantic.skip_reason == "budget" and "10000.0" in r.semantic.detail and not r.over_budget
    det.latency.set_profile(det.semantic_key, 1.0)  # profile says 1 ms: planner runs it
    r = det.detect(real_images(1)[0], budget_ms=60_000)
    assert r.semantic.ran
    # once enough in-process measurements exist they replace the (wrong) profile
    for _ in range(3):
        det.detect(real_images(1)[0])
    measured = det.latency.p90(det.semantic_key)
    assert measured > 1.0
    r = det.detect(real_images(1)[0], budget_ms=r.pixel.ms + measured * 0.5)
    assert r.semantic.skip_reason == "budget"


def test_warmup_seeds_latency_estimates(two_branch_bundle):
    d = Detector(two_branch_bundle, DetectorOptions(device="cpu", budget_ms=60_000))
    force_pixel_threshold(d, 1.0)
    assert d.detect(real_images(1)[0]).semantic.skip_reason == "budget"  # no estimate yet: no gamble
    est = d.warmup(runs=3)
    assert est[d.semantic_key] > 0
    assert d.detect(real_images(1)[0]).semantic.ran


def test_semantic_unavailable_when_not_loaded(two_branch_bundle):
    d = Detector(two_branch_bundle, DetectorOptions(load_semantic=False))
    r = d.detect(real_images(1)[0])
    assert r.semantic.skip_reason == "unavailable" and "load_semantic" in r.semantic.detail


def test_prefix_is_reused_across_images(det):
    rt = det.semantic
    rt.probability(__import__("cv2").imread(str(real_images(1)[0]))[:, :, ::-1])
    rt.probability(__import__("cv2").imread(str(fake_images(1)[0]))[:, :, ::-1])
    assert rt.last_timing["prefix_reused"] == 1.0


def test_same_probability_regardless_of_cache_state(det):
    import cv2

    a, b = (cv2.imread(str(p), cv2.IMREAD_COLOR_RGB) for p in (real_images(1)[0], fake_images(1)[0]))
    pa1 = det.semantic.probability(a)
    det.semantic.probability(b)
    pa2 = det.semantic.probability(a)
    assert pa1 == pytest.approx(pa2, abs=1e-5)


def test_eight_threads_match_serial_with_the_vlm(det):
    force_pixel_threshold(det, 1.0)
    imgs = real_images(2) + fake_images(2)
    serial = [(r.score, r.semantic.probability) for r in map(det.detect, imgs)]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda p: (lambda r: (r.score, r.semantic.probability))(det.detect(p)), imgs * 2))
    for got, want in zip(threaded, serial * 2):
        assert got[0] == pytest.approx(want[0], abs=1e-5) and got[1] == pytest.approx(want[1], abs=1e-5)


def test_no_llama_chatter_on_stderr(two_branch_bundle, capfd):
    d = Detector(two_branch_bundle, DetectorOptions(device="cpu"))
    force_pixel_threshold(d, 1.0)
    capfd.readouterr()
    d.detect(real_images(1)[0])
    assert capfd.readouterr().err == ""


def test_an_estimated_real_vlm_profile_drives_the_planner(two_branch_bundle, tmp_path):
    """benchmarks/vlm_shapes.py's estimate of a real VLM on this device, imported with ``bench --profile-from``, is
    what the planner predicts before it has measured anything: power='balanced' (cap 1.5 s) skips a 60 s VLM as
    'power', a 500 ms budget as 'budget'; full power with no budget still runs it."""
    import json
    import shutil

    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.cli import main
    from aligngemini_sdk.device import Device, device_key

    b = tmp_path / "bundle"
    shutil.copytree(two_branch_bundle, b)
    artifact = Bundle.open(b).manifest.semantic.default_artifact
    key = device_key(Device.CPU, None)
    estimate = {"qwen2.5-vl-3b": {key: {"semantic/q4_k_m": {"p50_ms": 58000.0, "p90_ms": 60000.0, "n": 0}}}}
    (tmp_path / "profile.json").write_text(json.dumps(estimate))
    args = ["bench", str(b), "--profile-from", str(tmp_path / "profile.json"), "--profile-model", "qwen2.5-vl-3b",
            "--profile-artifact", artifact]
    assert main(args) == 0
    assert main([*args[:-4], "--profile-model", "gpt-5"]) != 0  # an unknown model is refused, nothing written
    assert Bundle.open(b).manifest.device_profiles[key][f"semantic/{artifact}"].p90_ms == 60000.0
    with Detector(b, DetectorOptions(device="cpu", power="balanced")) as d:
        force_pixel_threshold(d, 1.0)
        r = d.detect(real_images(1)[0])
        assert r.semantic.skip_reason == "power" and "60000" in r.semantic.detail
        assert d.detect(real_images(1)[0], power="full", budget_ms=500).semantic.skip_reason == "budget"
        assert d.detect(real_images(1)[0], power="full").semantic.ran


def test_a_detector_that_fails_to_open_closes_what_it_had_opened(two_branch_bundle, tmp_path, monkeypatch):
    """The pixel branch opens first (a tampered pixel file fails before a VLM spends seconds loading); when the
    VLM's file then fails its checksum, the constructor raises and closes the pixel session it had opened instead of
    leaving it to the garbage collector."""
    import shutil

    from aligngemini_sdk import runtimes
    from aligngemini_sdk.errors import BundleIntegrityError

    bundle = tmp_path / "bundle"
    shutil.copytree(two_branch_bundle, bundle)
    semantic = Bundle.open(bundle).manifest.semantic
    mmproj = bundle / semantic.artifacts[semantic.default_artifact].files["mmproj"].path
    data = bytearray(mmproj.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    mmproj.write_bytes(bytes(data))
    opened = []
    real_open = runtimes.open_pixel
    monkeypatch.setattr(runtimes, "open_pixel", lambda *a, **kw: opened.append(real_open(*a, **kw)) or opened[-1])
    with pytest.raises(BundleIntegrityError, match="checksum mismatch"):
        Detector(bundle, device="cpu", threads=2)
    assert len(opened) == 1 and opened[0].session is None  # really opened, then closed
