"""MGN on ResNet-50: three branches, eight reduced features concatenated into one embedding."""

from __future__ import annotations

import pytest
import torch

from circle_repro.models.mgn import MGN

TINY = 1 / 16


def test_branch_resolutions_at_the_mgn_input_size() -> None:
    with torch.device("meta"):
        model = MGN()
        shared = model.shared(torch.empty(2, 3, 384, 128))
        maps = [branch(shared) for branch in model.branches]
        assert model(torch.empty(2, 3, 384, 128)).shape == (2, 2048)
    assert shared.shape == (2, 1024, 24, 8)
    assert [tuple(m.shape[1:]) for m in maps] == [(2048, 12, 4), (2048, 24, 8), (2048, 24, 8)]
    assert len(model.necks) == 8 and all(neck.linear.out_features == 256 for neck in model.necks)


def test_branches_start_from_the_same_resnet_weights() -> None:
    model = MGN(embedding_dim=64, width=TINY)
    conv = [branch[1][1].conv1.weight for branch in model.branches]
    torch.testing.assert_close(conv[0], conv[1])
    torch.testing.assert_close(conv[1], conv[2])
    assert conv[1].data_ptr() != conv[2].data_ptr()  # copies, trained separately


def test_each_feature_fills_its_own_slice_of_the_embedding() -> None:
    model = MGN(embedding_dim=64, width=TINY).eval()
    with torch.no_grad():
        model.necks[5].bn.weight.zero_()  # the first part-3 stripe
        model.necks[5].bn.bias.zero_()
        embeddings = model(torch.randn(2, 3, 96, 32))
    assert embeddings.shape == (2, 64)
    assert torch.all(embeddings[:, 40:48] == 0)
    assert torch.all(embeddings[:, :40].abs().sum(dim=0) > 0)


def test_training_step_and_dimension_check() -> None:
    model = MGN(in_channels=1, embedding_dim=16, width=TINY, bnneck=True)
    model(torch.randn(4, 1, 96, 32)).square().sum().backward()
    assert model.shared[0].weight.grad is not None
    with pytest.raises(ValueError, match="multiple of 8"):
        MGN(embedding_dim=100, width=TINY)
