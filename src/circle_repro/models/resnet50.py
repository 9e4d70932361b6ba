"""ResNet-50 (torchvision's Bottleneck trunk) with global pooling and an embedding layer + BN.

The trunk has torchvision's module names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so
torchvision's published ImageNet checkpoints load into it. ``last_stride=1`` keeps ``layer4`` at
1/16 resolution, as fast-reid does for re-ID. ``bnneck=True`` freezes the embedding BN's bias at
zero (BNNeck, Luo et al. 2019), as fast-reid's re-ID heads do. ``reduction=False`` drops the linear
projection: the embedding is the BN of the 2048 pooled channels, as fast-reid's bag-of-tricks
``EmbeddingHead`` (no ``EMBEDDING_DIM``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.resnet import Bottleneck, conv1x1

from circle_repro.models.weights import PublishedWeights, WeightsPath, load_into, read_checkpoint

LAYERS = (3, 4, 6, 3)
# torchvision's ImageNet checkpoints for resnet50; the first is the one to download.
TORCHVISION_RESNET50 = (
    PublishedWeights("torchvision ResNet-50 IMAGENET1K_V1", ResNet50_Weights.IMAGENET1K_V1.url),
    PublishedWeights("torchvision ResNet-50 IMAGENET1K_V2", ResNet50_Weights.IMAGENET1K_V2.url),
)


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, at least 1."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, round(channels * width))


def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            conv1x1(inplanes, planes * Bottleneck.expansion, stride), nn.BatchNorm2d(planes * Bottleneck.expansion)
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def resnet50_trunk(in_channels: int = 3, width: float = 1.0, last_stride: int = 2) -> nn.Sequential:
    """The ResNet-50 feature extractor (no pooling, no classifier), torchvision's layout and init.

    Output channels: ``2048 * width``; spatial stride 32, or 16 with ``last_stride=1``.
    """
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    base = scaled(64, width)
    stem_and_layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(in_channels, base, kernel_size=7, stride=2, padding=3, bias=False),
        bn1=nn.BatchNorm2d(base),
        relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    inplanes = base
    for index, (blocks, stride) in enumerate(zip(LAYERS, (1, 2, 2, last_stride), strict=True)):
        planes = base * 2**index
        stem_and_layers[f"layer{index + 1}"] = _layer(inplanes, planes, blocks, stride)
        inplanes = planes * Bottleneck.expansion
    trunk = nn.Sequential(stem_and_layers)
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return trunk


def trunk_channels(trunk: nn.Sequential) -> int:
    """Channels of the trunk's output feature map."""
    last_block = trunk.layer4[-1]
    return last_block.bn3.num_features


def load_torchvision_resnet50(trunk: nn.Sequential, weights: WeightsPath) -> None:
    """Fill a full-width, 3-channel trunk from a local torchvision ResNet-50 checkpoint (``fc`` dropped)."""
    state = read_checkpoint(weights, TORCHVISION_RESNET50)
    load_into(trunk, state, source=f"ResNet-50 checkpoint {weights}", ignore=lambda key: key.startswith("fc."))


class EmbeddingNeck(nn.Module):
    """Linear projection to ``embedding_dim`` followed by BatchNorm1d (bias frozen at 0 for BNNeck).

    ``reduction=False``: no projection, BatchNorm1d on the input (``embedding_dim`` must equal ``in_features``).
    """

    def __init__(self, in_features: int, embedding_dim: int, bnneck: bool = False, reduction: bool = True) -> None:
        super().__init__()
        if reduction:
            self.linear: nn.Module = nn.Linear(in_features, embedding_dim, bias=False)
        elif embedding_dim != in_features:
            raise ValueError(
                f"without a reduction the embedding is the {in_features} pooled channels, but embedding_dim is "
                f"{embedding_dim}; set embedding_dim to {in_features} or reduction to true"
            )
        else:
            self.linear = nn.Identity()
        self.bn = nn.BatchNorm1d(embedding_dim)
        if bnneck:
            self.bn.bias.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(features))


class ResNet50Embedding(nn.Module):
    """ResNet-50 trunk -> global average pooling -> linear -> BN: an ``embedding_dim`` vector.

    ``weights``: a local torchvision ImageNet checkpoint (file, or folder holding it under its
    published name); None keeps the random initialisation. ``width`` scales every channel count
    (1.0 is the real network). ``reduction=False``: no linear layer, BN on the pooled channels.
    """

    def __init__(
        self,
        in_channels: int = 3,
        embedding_dim: int = 512,
        last_stride: int = 2,
        bnneck: bool = False,
        width: float = 1.0,
        weights: WeightsPath | None = None,
        reduction: bool = True,
    ) -> None:
        super().__init__()
        self.trunk = resnet50_trunk(in_channels, width, last_stride)
        if weights is not None:
            load_torchvision_resnet50(self.trunk, weights)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if not isinstance(reduction, bool):
            raise ValueError(f"ResNet-50 reduction must be a bool, got {reduction!r}")
        self.neck = EmbeddingNeck(trunk_channels(self.trunk), embedding_dim, bnneck, reduction)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.trunk(images)).flatten(1))
