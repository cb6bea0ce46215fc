"""training/wild_invariance.py: each variant changes how an image is stored, never what it shows; the reading
names a format shortcut when there is one."""

from __future__ import annotations

import numpy as np

from tests.conftest import real_images


def test_every_variant_keeps_the_picture_and_changes_only_its_storage():
    from aligngemini_sdk.image import load_image
    from training.wild_invariance import VARIANTS

    rgb = load_image(real_images(1)[0]).rgb
    h, w = rgb.shape[:2]
    out = {name: load_image(make(rgb)).rgb for name, make in VARIANTS.items() if make is not None}
    assert np.array_equal(out["png"], rgb)  # lossless: the same pixels in another container
    for name in ("jpeg95", "jpeg75"):
        assert out[name].shape == rgb.shape and not np.array_equal(out[name], rgb)
        assert np.abs(out[name].astype(int) - rgb).mean() < 8  # re-encoded, still the same picture
    assert out["half_png"].shape[:2] == out["half_jpeg85"].shape[:2] == (h // 2, w // 2)


def test_the_reading_names_a_variant_that_loses_the_fakes_or_flags_the_photos():
    from training.wild_invariance import VariantSummary, read

    def v(name: str, ba: float, fpr: float = 0.02) -> VariantSummary:
        return VariantSummary(name, ba, 2 * ba - 1 + fpr, fpr, None, 0.0)

    assert read([v("served", 0.80), v("jpeg75", 0.76), v("half_png", 0.81)])[0]
    robust, text = read([v("served", 0.80), v("jpeg75", 0.70)])  # JPEG turns fakes "real": a format shortcut
    assert not robust and "jpeg75" in text
    robust, text = read([v("served", 0.80), v("half_png", 0.79, fpr=0.15)])
    assert not robust and "half_png" in text and "jpeg" not in text
