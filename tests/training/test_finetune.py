"""Round 8's cheap fine-tuning: the cached stage input plus the copied tail give back exactly the features the frozen
network pools; fine-tuning changes only the adapted blocks' columns, never the network it copied; and the grafted
network computes from the image the features the recipe fitted its heads on."""

import numpy as np
import pytest
import torch

from aligngemini_sdk.export.wholeimage import ALL_TAPS, WholeImageExpert, n_features
from training import finetune


@pytest.fixture(scope="module")
def model() -> WholeImageExpert:
    torch.manual_seed(0)
    return WholeImageExpert(pretrained=False, taps=ALL_TAPS).eval()


@pytest.mark.parametrize("first", [finetune.CACHED, 15])
def test_the_tail_on_cached_activations_reproduces_the_frozen_features(model, first):
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        frozen = model.features(x).numpy()
        acts = finetune.advance(model, finetune.stage_input(model, x).numpy(), first)
        tail = finetune.Tail(model, first).eval()(torch.from_numpy(acts)).numpy()
    np.testing.assert_array_equal(tail, frozen[:, finetune.adapted_columns(first)])


def test_fine_tuning_moves_only_the_adapted_columns_and_leaves_the_network_alone(model):
    n, first = 12, 15
    x = torch.randn(n * 2, 3, 224, 224)
    with torch.no_grad():
        feats = model.features(x).numpy().reshape(n, 2, -1)
        acts = finetune.advance(model, finetune.stage_input(model, x).numpy(), first)
    acts = acts.reshape(n, 2, *acts.shape[1:])
    y = np.arange(n) % 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    f = n_features(ALL_TAPS)
    start = finetune.StartHead(np.full(f, 0.01), 0.0, feats.reshape(-1, f).mean(0), feats.reshape(-1, f).std(0) + 1e-6)
    tail = finetune.fine_tune(model, acts, feats, y, np.arange(8), np.ones(8), start, first, 1.0, "test")
    out = finetune.adapted_features(tail, acts, feats, first)
    cols = finetune.adapted_columns(first)
    assert out.shape == feats.shape
    np.testing.assert_array_equal(out[:, :, :cols.start], feats[:, :, :cols.start])  # frozen blocks: untouched
    assert not np.allclose(out[:, :, cols], feats[:, :, cols])  # the adapted blocks moved
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # it fine-tuned a copy
    with torch.no_grad():  # the network the branch exports computes the adapted features from the image
        grafted = finetune.graft(model, tail, first).features(x).numpy().reshape(n, 2, -1)
    np.testing.assert_allclose(grafted, out, rtol=1e-4, atol=1e-5)
