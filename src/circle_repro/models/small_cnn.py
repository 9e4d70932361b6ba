"""The demo backbone: a four-block CNN for 28 x 28 images, with a linear embedding layer."""

from __future__ import annotations

import torch
from torch import nn


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """conv(32) - pool - conv(64) - pool - conv(128) - conv(128) - global average pool - linear."""

    def __init__(self, in_channels: int = 1, embedding_dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(in_channels, 32),
            nn.MaxPool2d(2),
            _block(32, 64),
            nn.MaxPool2d(2),
            _block(64, 128),
            _block(128, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.embedding = nn.Linear(128, embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(images))
