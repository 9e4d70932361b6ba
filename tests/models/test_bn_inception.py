"""BN-Inception (Cadene bninception layout): size, channels, checkpoint names, embedding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from circle_repro.models import bn_inception as bn_inception_module
from circle_repro.models.bn_inception import (
    CADENE_BNINCEPTION,
    BNInceptionEmbedding,
    bn_inception_trunk,
    cadene_key,
)
from circle_repro.models.weights import PublishedWeights

TINY = 1 / 16


def test_full_size_parameter_count_and_real_input_size() -> None:
    with torch.device("meta"):
        trunk = bn_inception_trunk()
        feature_map = trunk(torch.empty(2, 3, 227, 227))
    assert feature_map.shape == (2, 1024, 7, 7)
    # osmr/imgclsmob pytorchcv bninception (the Cadene network) asserts 11,295,240 parameters
    # with its 1024 -> 1000 classifier (1,025,000 of them): 10,270,240 without it.
    assert sum(p.numel() for p in trunk.parameters()) == 11_295_240 - 1_025_000


def test_input_size_that_reaches_a_reduction_block_odd_is_refused() -> None:
    with torch.device("meta"), pytest.raises(ValueError, match="block inception_4e halves an odd 7x7"):
        bn_inception_trunk()(torch.empty(1, 3, 112, 112))


def test_block_output_channels_follow_the_published_table() -> None:
    with torch.device("meta"):
        trunk = bn_inception_trunk()
    channels = [block.out_channels for name, block in trunk.named_children() if name.startswith("inception")]
    assert channels == [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]


def test_keys_map_to_cadene_checkpoint_names() -> None:
    with torch.device("meta"):
        names = {cadene_key(key) for key in bn_inception_trunk().state_dict()}
    for expected in (
        "conv1_7x7_s2.weight",
        "conv1_7x7_s2_bn.running_mean",
        "conv2_3x3_reduce.bias",
        "conv2_3x3_bn.weight",
        "inception_3a_1x1.weight",
        "inception_3a_double_3x3_2_bn.running_var",
        "inception_3c_3x3_reduce.weight",
        "inception_4e_double_3x3_2.bias",
        "inception_5b_pool_proj_bn.bias",
    ):
        assert expected in names
    absent = ("inception_3c_1x1", "inception_3c_pool_proj", "inception_4e_1x1", "inception_4e_pool_proj")
    assert not any(name.startswith(absent) for name in names)


def test_cadene_style_checkpoint_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cadene's file: flat names, BN vectors stored as 1 x C, no BN counters, a last_linear."""
    source = bn_inception_trunk(width=TINY)
    state = {
        cadene_key(key): tensor.unsqueeze(0) if ".bn." in key else tensor
        for key, tensor in source.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    state["last_linear.weight"], state["last_linear.bias"] = torch.zeros(1000, 64), torch.zeros(1000)
    file = tmp_path / "bn_inception.pth"
    torch.save(state, file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    published = PublishedWeights("test BN-Inception", f"https://example.invalid/bn_inception-{digest[:9]}.pth")
    monkeypatch.setattr(bn_inception_module, "CADENE_BNINCEPTION", (published,))

    model = BNInceptionEmbedding(width=TINY, weights=file)

    for key, tensor in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(model.trunk.state_dict()[key], tensor, msg=key)


def test_published_checkpoint_is_cadenes() -> None:
    assert CADENE_BNINCEPTION[0].filename == "bn_inception-52deb4733.pth"
    assert CADENE_BNINCEPTION[0].sha256_prefix == "52deb4733"


def test_tiny_model_gives_the_requested_embedding() -> None:
    model = BNInceptionEmbedding(embedding_dim=512, width=TINY)
    embeddings = model(torch.randn(2, 3, 64, 64))
    assert embeddings.shape == (2, 512)
    embeddings.sum().backward()


def _bn_statistics(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: value.clone()
        for name, value in module.state_dict().items()
        if "running_" in name or "num_batches" in name
    }


def _training_step(outer: torch.nn.Module) -> None:
    """What mmengine's train loop does each iteration: ``model.train()`` on the outermost module, then a step."""
    optimizer = torch.optim.SGD(outer.parameters(), lr=0.1)
    outer.train()
    outer(torch.randn(4, 3, 64, 64)).square().sum().backward()
    optimizer.step()


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_bn_keeps_its_statistics_through_train_calls_and_still_learns_its_affine(freeze_bn) -> None:
    torch.manual_seed(0)
    backbone = BNInceptionEmbedding(embedding_dim=8, width=TINY, freeze_bn=freeze_bn)
    outer = torch.nn.Sequential(backbone)  # train() reaches the backbone through a container, as in the Runner
    before = _bn_statistics(backbone)
    gamma = backbone.trunk.conv1_7x7_s2.bn.weight.detach().clone()
    _training_step(outer)
    after = _bn_statistics(backbone)
    unchanged = all(torch.equal(before[name], after[name]) for name in before)
    assert unchanged == freeze_bn  # without freezing the same step moves the statistics
    assert not torch.equal(gamma, backbone.trunk.conv1_7x7_s2.bn.weight)  # gamma trains either way
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns) == freeze_bn
    assert backbone.embedding.training and outer.training


def test_max_pool_takes_the_channel_maxima_of_the_trunk_output() -> None:
    torch.manual_seed(0)
    model = BNInceptionEmbedding(embedding_dim=8, width=TINY, pool="max").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.embedding(model.trunk(images).amax(dim=(2, 3)))
        assert torch.allclose(model(images), expected)
        assert not torch.allclose(
            BNInceptionEmbedding(embedding_dim=8, width=TINY).eval().pool(model.trunk(images)).flatten(1),
            model.trunk(images).amax(dim=(2, 3)),
        )


def test_pool_and_freeze_bn_are_checked() -> None:
    with pytest.raises(ValueError, match="pool must be one of"):
        BNInceptionEmbedding(width=TINY, pool="gem")
    with pytest.raises(ValueError, match="freeze_bn must be a bool"):
        BNInceptionEmbedding(width=TINY, freeze_bn="yes")
