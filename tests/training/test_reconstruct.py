"""The recipe's self-made fakes: autoencoder reconstructions of lossless real photos, aligned with their twins
in size, format and colour statistics so that only decoder artifacts tell them apart."""

import random

import numpy as np
import pytest

from tests.conftest import real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def _rows_and_images():
    from aligngemini_sdk.image import load_image

    rows = [{"abs": str(p), "label": "real", "source": "kodak24", "family": "kodak24"} for p in real_images(3)]
    rows.append({"abs": "/x/photo.jpg", "label": "real", "source": "cnndetection", "family": "biggan"})
    rows.append({"abs": "/x/fake.png", "label": "fake", "source": "sd_family", "family": "sd"})
    images = {r["abs"]: load_image(r["abs"]).rgb for r in rows[:3]}
    return rows, images


def test_reconstructions_are_paired_fakes_of_the_lossless_reals_only():
    import torch

    from training.reconstruct import reconstruction_fakes

    torch.manual_seed(0)  # the recipe seeds torch; unseeded, a 30-step autoencoder sometimes left a channel flat
    rows, images = _rows_and_images()
    fakes = reconstruction_fakes(rows, images, random.Random(0), steps=30)
    assert [f["abs"] for f in fakes] == [r["abs"] + "#reconstruction" for r in rows[:3]]  # not the JPEG, not fakes
    for f, r in zip(fakes, rows):
        assert f["label"] == "fake" and f["lossless"] and f["source"] == "reconstruction"
        src, rec = images[r["abs"]].astype(np.float64), images[f["abs"]].astype(np.float64)
        assert rec.shape == src.shape and images[f["abs"]].dtype == np.uint8
        assert 0.2 < np.abs(rec - src).mean() < 40  # the same picture, not a copy of it
        # no global colour cast to learn: per-channel mean and spread match the source
        np.testing.assert_allclose(rec.mean((0, 1)), src.mean((0, 1)), atol=1.5)
        np.testing.assert_allclose(rec.std((0, 1)), src.std((0, 1)), rtol=0.05, atol=1.5)


def test_odd_sized_images_reconstruct_to_their_own_size():
    from training.reconstruct import ReconstructionAE, reconstruct

    img = np.random.default_rng(0).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    assert reconstruct(ReconstructionAE().eval(), img).shape == (37, 51, 3)


def test_mixing_replaces_the_stated_share_of_fake_draws():
    from training.train_default import class_balanced, mix_fakes

    train = [{"abs": f"r{i}", "label": "real", "source": "a"} for i in range(5)] + \
            [{"abs": f"f{i}", "label": "fake", "source": "a"} for i in range(5)]
    extra = [{"abs": "x", "label": "fake", "source": "reconstruction"}]
    draw, rng = mix_fakes(class_balanced(train), extra, 0.33), random.Random(0)
    fakes = [f for _ in range(500) for f in draw(rng, 10)[1]]
    assert abs(np.mean([f["abs"] == "x" for f in fakes]) - 0.33) < 0.03
