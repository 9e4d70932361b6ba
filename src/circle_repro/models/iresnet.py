"""IResNet-34 / IResNet-100, the face backbones of insightface's arcface_torch.

Layout as in arcface_torch ``backbones/iresnet.py``: a 3x3 stem (64) + BN + PReLU; four stages
of IBasicBlocks (BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the shortcut), each
stage starting with stride 2; then BN2d -> dropout -> flatten -> FC -> BN1d (weight fixed at 1).
At 112 x 112 the last feature map is 7 x 7, which fixes the FC's input size.
"""

from __future__ import annotations

import torch
from torch import nn

from circle_repro.models.resnet50 import scaled

IRESNET34_LAYERS = (3, 4, 6, 3)
IRESNET100_LAYERS = (3, 13, 30, 3)
STRIDE = 16  # four stride-2 stages


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, added to the (projected) input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """IResNet with an ``embedding_dim`` output (BN1d features), for ``input_size`` square faces."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        in_channels: int = 3,
        embedding_dim: int = 512,
        width: float = 1.0,
        input_size: int = 112,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if input_size % STRIDE:
            raise ValueError(f"IResNet input_size must be a multiple of {STRIDE}, got {input_size}")
        self.input_size = input_size
        base = scaled(64, width)
        self.conv1 = _conv3x3(in_channels, base)
        self.bn1 = nn.BatchNorm2d(base, eps=1e-5)
        self.prelu = nn.PReLU(base)
        inplanes = base
        for index, blocks in enumerate(layers):
            planes = base * 2**index
            stage = [IBasicBlock(inplanes, planes, stride=2)] + [IBasicBlock(planes, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(inplanes * (input_size // STRIDE) ** 2, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"IResNet built for {self.input_size}x{self.input_size} inputs got {tuple(images.shape[-2:])}; "
                "set input_size to the image size"
            )
        x = self.prelu(self.bn1(self.conv1(images)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def iresnet34(
    in_channels: int = 3, embedding_dim: int = 512, width: float = 1.0, input_size: int = 112, dropout: float = 0.0
) -> IResNet:
    """IResNet-34: stages of 3, 4, 6, 3 IBasicBlocks."""
    return IResNet(IRESNET34_LAYERS, in_channels, embedding_dim, width, input_size, dropout)


def iresnet100(
    in_channels: int = 3, embedding_dim: int = 512, width: float = 1.0, input_size: int = 112, dropout: float = 0.0
) -> IResNet:
    """IResNet-100: stages of 3, 13, 30, 3 IBasicBlocks."""
    return IResNet(IRESNET100_LAYERS, in_channels, embedding_dim, width, input_size, dropout)
