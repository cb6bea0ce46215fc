"""The in-the-wild report per generator family: every fake of the pool has a family on purpose, and development
images are counted by the threshold of the fold that held their repository out."""

import csv

import pytest

from tests.conftest import SHARED

pytestmark = pytest.mark.shared_data  # reads ../shared/data and the committed split


def test_every_fake_of_the_wild_pool_belongs_to_a_named_family():
    from training.wild_report import FAMILIES, family

    with open(SHARED / "wild" / "images.csv") as fh:
        fakes = [r["generator"] for r in csv.DictReader(fh) if r["label"] == "fake"]
    names = {family(g) for g in fakes}
    assert names <= {n for n, _ in FAMILIES} and len(names) == len(FAMILIES)  # no family is empty
    assert family("SDXL + IP-Adapter-Plus") == family("SD 3.5") != family("Kolors + Kolors-ControlNet")
    with pytest.raises(ValueError, match="no family"):
        family("a generator nobody has placed")


def test_development_fakes_are_called_by_their_own_folds_threshold():
    from training.wild_report import dev_families

    fold = {"repo": "Tencent/HunyuanDiT", "label": "fake", "n": 7,
            "G": {"threshold": 0.5, "scores": [0.9, 0.9, 0.9, 0.5, 0.1, 0.1, 0.1]}}  # 0.5 is not above 0.5
    real = {"repo": "facebookresearch/sam2", "label": "real", "n": 14, "G": {"threshold": 0.5, "scores": [0.9] * 14}}
    got = dev_families({"choice": "G", "folds": [fold, real]})
    assert list(got) == ["Hunyuan-DiT"] and got["Hunyuan-DiT"]["n"] == 7
    assert got["Hunyuan-DiT"]["called_fake"] == pytest.approx(3 / 7)
    lo, hi = got["Hunyuan-DiT"]["ci95"]
    assert lo < 3 / 7 < hi
    fold["G"]["scores"] = fold["G"]["scores"][:6]  # scores that do not line up with the split's images: refused
    with pytest.raises(ValueError, match="6 scores for 7 images"):
        dev_families({"choice": "G", "folds": [fold]})
