"""The forensic features of the exploration measure what their names say: NPR residuals vanish on a nearest-neighbour
2x upsampled image, a period-8 tone raises the spectrum's period-8 peaks and no other, and Tiny-LaDeDa's per-patch logits
average to the real checkpoint's own image logit under every preprocessing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aligngemini_sdk.export.ladeda import PREPROCESS
from training import explore_forensic as ef


def test_npr_residuals_vanish_on_a_nearest_upsampled_image_and_not_on_noise():
    torch.manual_seed(0)
    noise = torch.randn(2, 3, 224, 224)
    upsampled = F.interpolate(torch.randn(2, 3, 112, 112), scale_factor=2, mode="nearest")
    floor = float(np.log(1e-6))
    assert torch.allclose(ef.npr_features(upsampled), torch.full((2, 18), floor))
    assert (ef.npr_features(noise) > floor + 5).all()


def test_a_period_8_tone_raises_the_period_8_peaks_on_its_axes_and_no_other_period():
    torch.manual_seed(0)
    noise = torch.randn(1, 3, 224, 224)
    t = torch.arange(224, dtype=torch.float32)
    tone = torch.cos(2 * np.pi * t / 8)[:, None] + torch.cos(2 * np.pi * t / 8)[None, :]
    change = (ef.spectrum_features(noise + tone) - ef.spectrum_features(noise))[0, ef.BANDS:].reshape(len(ef.PERIODS), 3)
    axes, diagonal = change[ef.PERIODS.index(8), :2], change[ef.PERIODS.index(8), 2]
    assert (axes > 3).all()  # e^3 = 20x the band's power
    assert diagonal.abs() < 0.5  # a sum of two separable tones puts nothing on the diagonal
    others = [p for p in ef.PERIODS if p != 8]
    assert change[[ef.PERIODS.index(p) for p in others]].abs().max() < 0.5


@pytest.mark.parametrize("preprocess", PREPROCESS)
def test_ladeda_patch_logits_average_to_the_checkpoints_image_logit(preprocess):
    from tests.conftest import LADEDA

    if not LADEDA.is_file():
        pytest.skip(f"{LADEDA} is not there (../shared/data)")
    from aligngemini_sdk.export.ladeda import load_ladeda

    net = load_ladeda(LADEDA, preprocess)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats, logit = ef.ladeda_features(net, x), net(x)[:, 0]
    assert feats.shape == (2, 20)
    torch.testing.assert_close(feats[:, 16], logit, rtol=1e-4, atol=1e-4)  # the patch logits' mean
    assert (feats[:, 18] >= feats[:, 19]).all()  # the maximum is at least the 90th percentile
