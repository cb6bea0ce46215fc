"""The Detector on real bundles and real images: API, results, budgets, skip reasons, threads, video."""

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from aligngemini_sdk import Detector, DetectorOptions, Image
from aligngemini_sdk.errors import ImageDecodeError, InputShapeError
from tests.conftest import fake_images, real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


@pytest.fixture(scope="module")
def det(ladeda_bundle):
    return Detector.from_bundle(ladeda_bundle, device="cpu")


def test_result_fields(det):
    r = det.detect(real_images(1)[0])
    assert isinstance(r.is_fake, bool) and 0.0 <= r.score <= 1.0 and r.label in ("real", "fake")
    assert r.pixel.ran and r.pixel.probability is not None and r.pixel.ms > 0
    assert r.semantic.ran is False and r.semantic.skip_reason == "unavailable"
    assert r.total_ms >= r.pixel.ms and r.bundle_id == det.bundle.manifest.bundle_id
    d = r.to_dict()
    assert set(d["branches"]) == {"pixel", "semantic"}


def test_inputs_of_every_kind_agree(det):
    path = real_images(1)[0]
    rgb = cv2.imread(str(path), cv2.IMREAD_COLOR_RGB)
    scores = {
        "path": det.detect(path).score,
        "bytes": det.detect(path.read_bytes()).score,
        "rgb": det.detect(rgb, color_order="RGB").score,
        "bgr": det.detect(np.ascontiguousarray(rgb[:, :, ::-1]), color_order="BGR").score,
        "image": det.detect(Image(rgb)).score,
    }
    assert len(set(scores.values())) == 1, scores


def test_batch_equals_single(det):
    imgs = real_images(3) + fake_images(2)
    batch = det.detect_batch(imgs)
    assert [round(r.score, 6) for r in batch] == [round(det.detect(p).score, 6) for p in imgs]
    assert det.detect_batch([]) == []


def test_bad_inputs_raise_typed_errors_naming_the_input(det, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(ImageDecodeError, match=r"broken\.jpg"):
        det.detect(bad)
    with pytest.raises(InputShapeError):
        det.detect(np.zeros((32, 32, 3), np.uint8))  # colour order not stated


def test_budget_is_reported(det):
    r = det.detect(real_images(1)[0], budget_ms=0.001)
    assert r.budget_ms == 0.001 and r.over_budget is True  # the pixel branch alone overran: reported, not hidden
    assert det.detect(real_images(1)[0], budget_ms=1e6).over_budget is False


def test_eight_threads_give_serial_results(det):
    imgs = (real_images(4) + fake_images(4)) * 3
    serial = [det.detect(p).score for p in imgs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda p: det.detect(p).score, imgs))
    assert threaded == serial


def test_video_frames_and_file(det, tmp_path):
    frames = [cv2.imread(str(p)) for p in real_images(3)]  # BGR, as OpenCV gives them
    res = list(det.detect_video(frames, budget_ms=1e4))
    assert [r.extra["frame"] for r in res] == [0, 1, 2]
    assert [r.score for r in res] == [det.detect(p).score for p in real_images(3)]
    assert [r.extra["frame"] for r in det.detect_video(frames, stride=2)] == [0, 2]
    path = tmp_path / "clip.avi"
    h, w = 256, 320
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    for f in frames:
        vw.write(np.ascontiguousarray(f[:h, :w]))
    vw.release()
    out = list(det.detect_video(path, max_frames=2))
    assert len(out) == 2 and all(0 <= r.score <= 1 for r in out)
    with pytest.raises(ImageDecodeError):
        list(det.detect_video(tmp_path / "missing.mp4"))


def test_options_validation(ladeda_bundle):
    with pytest.raises(ValueError):
        DetectorOptions(power="turbo")
    with pytest.raises(ValueError):
        DetectorOptions(budget_ms=0)
    with pytest.raises(TypeError):
        Detector(ladeda_bundle, DetectorOptions(), power="low")


def test_info_describes_what_runs(det):
    info = det.info()
    assert info["pixel"]["backend"] == "onnxruntime"
    assert info["pixel"]["providers"] == ["CPUExecutionProvider"]
    assert "unavailable" in info["semantic"]


def test_unavailable_gpu_falls_back_with_a_reason(ladeda_bundle):
    d = Detector.from_bundle(ladeda_bundle, device="cuda")
    info = d.info()["pixel"]
    assert info["providers"] == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in f for f in info["fallback"])


def test_device_side_does_not_import_torch(ladeda_bundle):
    import subprocess
    import sys

    code = ("import sys; from aligngemini_sdk import Detector; "
            f"d = Detector({str(ladeda_bundle)!r}); d.detect({str(real_images(1)[0])!r}); "
            "bad = [m for m in ('torch', 'transformers', 'onnx', 'llama_cpp', 'tensorrt') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("power", "spins"), [("full", True), ("balanced", False), ("low", False)])
def test_idle_workers_spin_wait_only_in_the_full_power_mode(ladeda_bundle, power, spins):
    """Spinning workers keep both cores busy between photos (benchmarks/power_modes.py: 41-43 CPU-ms per call against
    14-15 at one photo every 30 ms) for about a millisecond of latency: only ``full`` pays that; same answers."""
    image = real_images(1)[0]
    with Detector(ladeda_bundle, power=power) as det, Detector(ladeda_bundle) as reference:
        assert det.pixel.describe()["spinning"] is spins
        assert det.detect(image).pixel.probability == reference.detect(image).pixel.probability
