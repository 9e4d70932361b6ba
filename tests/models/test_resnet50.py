"""ResNet-50 embedding: torchvision's trunk layout, last stride, BNNeck, embedding size."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import ResNet50_Weights, resnet50

from circle_repro.models.resnet50 import ResNet50Embedding, resnet50_trunk

TINY = 1 / 16  # width multiplier for smoke runs: 4 base channels


def test_full_width_trunk_has_torchvisions_keys_shapes_and_parameter_count() -> None:
    with torch.device("meta"):
        reference = {k: v.shape for k, v in resnet50().state_dict().items() if not k.startswith("fc.")}
        model = ResNet50Embedding(embedding_dim=512)
    assert {k: v.shape for k, v in model.trunk.state_dict().items()} == reference
    # torchvision publishes 25,557,032 parameters for resnet50 (ResNet50_Weights meta
    # "num_params"); without the 1000-way fc (2048 x 1000 + 1000) the trunk has 23,508,032.
    assert ResNet50_Weights.IMAGENET1K_V1.meta["num_params"] == 25_557_032
    assert sum(p.numel() for p in model.trunk.parameters()) == 25_557_032 - 2_049_000


def test_real_input_size_and_last_stride() -> None:
    with torch.device("meta"):
        images = torch.empty(2, 3, 256, 128)
        assert resnet50_trunk()(images).shape == (2, 2048, 8, 4)
        assert resnet50_trunk(last_stride=1)(images).shape == (2, 2048, 16, 8)


def test_tiny_model_gives_an_embedding_of_the_requested_size_with_gradients() -> None:
    model = ResNet50Embedding(in_channels=1, embedding_dim=24, width=TINY)
    images = torch.randn(4, 1, 64, 32)
    embeddings = model(images)
    assert embeddings.shape == (4, 24)
    embeddings.square().sum().backward()
    assert model.trunk.conv1.weight.grad is not None


def test_bnneck_freezes_the_embedding_bn_bias() -> None:
    assert ResNet50Embedding(width=TINY).neck.bn.bias.requires_grad
    neck = ResNet50Embedding(width=TINY, last_stride=1, bnneck=True).neck
    assert not neck.bn.bias.requires_grad and neck.linear.bias is None


def test_without_reduction_the_embedding_is_the_bn_of_the_pooled_channels() -> None:
    torch.manual_seed(0)
    model = ResNet50Embedding(embedding_dim=128, width=TINY, last_stride=1, bnneck=True, reduction=False).eval()
    assert not any(name.startswith("neck.linear") for name, _ in model.named_parameters())
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), model.neck.bn(model.trunk(images).mean(dim=(2, 3))), atol=1e-6)


def test_without_reduction_embedding_dim_must_match_the_trunk() -> None:
    with pytest.raises(ValueError, match="set embedding_dim to 128"):
        ResNet50Embedding(embedding_dim=512, width=TINY, reduction=False)
