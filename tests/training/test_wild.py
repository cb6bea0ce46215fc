"""The in-the-wild recipe's grouped validation: a split fixed by a written rule, the decision rule as written,
thresholds that keep their false-positive promise, and a head that survives being folded into the network."""

import csv

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_the_committed_split_is_the_written_rule():
    from training.wild_split import OUT, rows

    with open(OUT) as fh:
        committed = list(csv.DictReader(fh))
    assert committed == rows(SHARED)
    final = {r["source"] for r in committed if r["role"] == "final"}
    assert final == {"EliSchwartz/imagenet-sample-images", "Li-Chongyi/Zero-DCE", "XLabs-AI/x-flux",
                     "Evolink-AI/awesome-seedream-5-pro-guide-and-prompt", "jamez-bondos/awesome-gpt4o-images"}
    dev = {r["source"] for r in committed if r["role"] == "dev"}
    train = {r["source"] for r in committed if r["role"] == "train"}
    assert len(dev) == 10 and not (final & dev) and not (train & (final | dev))  # whole repositories, never split
    assert not any("CIFAKE" in r["source"] for r in committed)


def test_round_two_needs_five_points_over_the_old_default_and_a_bounded_false_positive_rate():
    from training.train_semantic import ROUNDS, decide

    def summary(**bacc_fpr):
        base = {c: (0.50, 0.05) for c in ("A", "B", "C", "B2", "D")} | bacc_fpr
        return {c: {"balanced_accuracy_repo_weighted": b, "mean_fpr_real_repos": f} for c, (b, f) in base.items()}

    assert decide(summary(D=(0.60, 0.05)), ROUNDS[2]) == "D"
    assert decide(summary(D=(0.54, 0.05)), ROUNDS[2]) == "A"  # +4 points is not enough
    assert decide(summary(B2=(0.70, 0.11)), ROUNDS[2]) == "A"  # the best one calls too many real photos fake
    assert decide(summary(A=(0.55, 0.01), C=(0.50, 0.01)), ROUNDS[2]) == "A"


def test_round_three_keeps_the_shipped_design_unless_a_candidate_beats_it_by_three_points():
    from training.train_semantic import ROUNDS, decide

    def summary(**bacc_fpr):
        base = {c: (0.68, 0.05) for c in ("D", "E", "F", "G")} | bacc_fpr
        return {c: {"balanced_accuracy_repo_weighted": b, "mean_fpr_real_repos": f} for c, (b, f) in base.items()}

    assert decide(summary(G=(0.72, 0.08)), ROUNDS[3]) == "G"
    assert decide(summary(E=(0.705, 0.02)), ROUNDS[3]) == "D"  # +2.5 points is not enough
    assert decide(summary(F=(0.80, 0.12)), ROUNDS[3]) == "D"  # too many real photos called fake
    assert decide(summary(D=(0.70, 0.02)), ROUNDS[3]) == "D"


def test_every_round_is_written_down_before_it_runs():
    from training.train_semantic import ROUNDS

    text = (ROOT / "training" / "WILD_VALIDATION.md").read_text()
    for n in ROUNDS:
        assert f"## Round {n} (" in text
    assert text.count("Decision rule") == 2  # round 1's rule (kept by round 2) and round 3's


def test_repository_balanced_weights_give_every_repository_the_same_share_of_its_class():
    from aligngemini_sdk.export.calibrate import class_balanced

    y = np.array([1, 1, 1, 1, 0, 0, 0])
    repo_w = np.array([1 / 3, 1 / 3, 1 / 3, 1.0, 0.5, 0.5, 1.0])  # fakes: repos of 3 and 1 images; reals: 2 and 1
    w = class_balanced(y, repo_w)
    assert np.isclose(w[y == 1].sum(), 0.5) and np.isclose(w[y == 0].sum(), 0.5)
    assert np.isclose(w[:3].sum(), w[3]) and np.isclose(w[4:6].sum(), w[6])
    assert np.allclose(class_balanced(y), np.where(y == 1, 0.5 / 4, 0.5 / 3))


def test_an_operating_point_threshold_keeps_its_false_positive_promise():
    from aligngemini_sdk.export.calibrate import threshold_for_fpr as threshold

    rng = np.random.default_rng(0)
    for n in (20, 99, 451):
        real = rng.random(n)
        for fpr in (0.01, 0.05, 0.10):
            assert np.mean(real > threshold(real, fpr)) <= fpr


def test_the_folded_head_gives_the_probe_logits(tmp_path):
    import torch

    from training.train_semantic import Head, WholeImageExpert, fold_into

    rng = np.random.default_rng(0)
    model = WholeImageExpert(pretrained=False).eval()
    x = torch.from_numpy(rng.normal(size=(3, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        feats = model.features(x).numpy().astype(np.float64)
    head = Head(w=rng.normal(size=feats.shape[1]), b=0.3, mu=feats.mean(0), sd=feats.std(0) + 1e-3)
    with torch.no_grad():
        got = fold_into(model, head)(x).numpy()[:, 0]
    assert np.allclose(got, head.logits(feats), atol=1e-3)
