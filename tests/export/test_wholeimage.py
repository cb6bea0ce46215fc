"""The whole-image expert's pooled features: every tap set a head may read is a column selection of the features
pooled at every block, and a saved head finds its tap set again from its width."""

import numpy as np
import pytest
import torch

from aligngemini_sdk.export.wholeimage import (
    ALL_TAPS,
    TAP_SETS,
    TAPS,
    WholeImageExpert,
    feature_columns,
    load_wholeimage,
    n_features,
)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32))


@pytest.mark.parametrize("taps", TAP_SETS)
def test_a_tap_set_reads_its_columns_of_the_all_block_features(taps, x):
    torch.manual_seed(0)
    every = WholeImageExpert(pretrained=False, taps=ALL_TAPS).eval()
    some = WholeImageExpert(pretrained=False, taps=taps).eval()
    some.net.load_state_dict(every.net.state_dict())
    with torch.no_grad():
        all_feats, feats = every.features(x).numpy(), some.features(x).numpy()
    assert all_feats.shape[1] == n_features(ALL_TAPS) and feats.shape[1] == n_features(taps)
    assert np.array_equal(all_feats[:, feature_columns(taps)], feats)


def test_tap_sets_have_distinct_widths_so_a_head_finds_its_own():
    assert len({n_features(t) for t in TAP_SETS}) == len(TAP_SETS)
    assert set(TAPS) < set(ALL_TAPS)


@pytest.mark.parametrize("taps", TAP_SETS)
def test_a_saved_expert_loads_with_its_tap_set(taps, x, tmp_path):
    model = WholeImageExpert(pretrained=False, taps=taps).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = load_wholeimage(tmp_path / "w.pt")
    assert loaded.taps == tuple(taps)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
