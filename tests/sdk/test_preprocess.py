"""sdk/preprocess.py: the geometric step (centre crop, reflect padding, the full-image cap) and the normalisation into
the model's float tensor, fused in place and equal to the textbook formula."""

import numpy as np
import pytest
from PIL import Image as PILImage

from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import center_crop, fit_to_spec, normalize
from tests.conftest import KODAK

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

PHOTO = KODAK / "testsets__Kodak24__kodim01.png"


def photo_rgb() -> np.ndarray:
    return np.asarray(PILImage.open(PHOTO).convert("RGB"))


def test_center_crop_never_upsamples_small_images():
    small = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    out = center_crop(small, 64, 64)
    assert out.shape == (64, 64, 3)
    # the original pixels appear unchanged in the middle (reflect padding around them)
    assert any(np.array_equal(out[r:r + 20, c:c + 30], small) for r in range(45) for c in range(35))


def test_fit_and_normalize_follow_the_spec():
    spec = InputSpec(height=336, width=336, crop="center", resize="none", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    rgb = photo_rgb()
    fitted = fit_to_spec(rgb, spec)
    h, w = rgb.shape[:2]
    np.testing.assert_array_equal(fitted, rgb[(h - 336) // 2:(h - 336) // 2 + 336, (w - 336) // 2:(w - 336) // 2 + 336])
    t = normalize(fitted, spec)
    assert t.shape == (3, 336, 336) and t.dtype == np.float32
    assert t[0, 0, 0] == pytest.approx(fitted[0, 0, 0] / 255 * 2 - 1, abs=1e-6)
    bgr = normalize(fitted, InputSpec(**{**spec.__dict__, "color_order": "BGR", "layout": "NHWC"}))
    assert bgr.shape == (336, 336, 3) and bgr[0, 0, 0] == pytest.approx(t[2, 0, 0])


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fast_normalisation_equals_the_textbook_formula(order, layout):
    """The fused in-place path must give exactly what ``(x / scale - mean) / std`` gives, per channel."""
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    spec = InputSpec(height=224, width=224, crop="center", resize="none", mean=mean, std=std,
                     color_order=order, layout=layout)
    fitted = fit_to_spec(photo_rgb(), spec)
    x = fitted.astype(np.float64) / 255.0
    if order == "BGR":
        x, m, s = x[:, :, ::-1], np.array(mean[::-1]), np.array(std[::-1])
    else:
        m, s = np.array(mean), np.array(std)
    ref = (x - m) / s
    if layout == "NCHW":
        ref = ref.transpose(2, 0, 1)
    np.testing.assert_allclose(normalize(fitted, spec), ref, atol=2e-6)


def test_batches_are_normalised_in_place_per_slot():
    from aligngemini_sdk.preprocess import preprocess
    from aligngemini_sdk.runtimes.base import batched_tensors

    spec = InputSpec(height=64, width=64, crop="center", resize="none")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(80, 90), (64, 64), (100, 70)]]
    [(idx, batch)] = batched_tensors(imgs, spec)
    assert idx == [0, 1, 2] and batch.shape == (3, 3, 64, 64)
    for i, im in enumerate(imgs):
        np.testing.assert_array_equal(batch[i], preprocess(im, spec))
    full = InputSpec(height=0, width=0, crop="none")
    groups = batched_tensors(imgs, full)
    assert sorted(tuple(g[0]) for g in groups) == [(0,), (1,), (2,)]


def test_full_image_spec_caps_huge_inputs():
    spec = InputSpec(height=0, width=0, crop="none", max_side=256)
    assert fit_to_spec(np.zeros((1000, 700, 3), np.uint8), spec).shape == (256, 256, 3)
    assert fit_to_spec(np.zeros((100, 70, 3), np.uint8), spec).shape == (100, 70, 3)
