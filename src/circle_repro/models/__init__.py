"""Backbones and embedding heads, by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from circle_repro.models.bn_inception import BNInceptionEmbedding
from circle_repro.models.iresnet import IResNet, iresnet34, iresnet100
from circle_repro.models.mgn import MGN
from circle_repro.models.resnet50 import ResNet50Embedding
from circle_repro.models.small_cnn import SmallCNN

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet50": ResNet50Embedding,
    "bn_inception": BNInceptionEmbedding,
    "iresnet34": iresnet34,
    "iresnet100": iresnet100,
    "mgn": MGN,
}

__all__ = [
    "BACKBONES",
    "MGN",
    "BNInceptionEmbedding",
    "IResNet",
    "ResNet50Embedding",
    "SmallCNN",
    "build_backbone",
    "iresnet34",
    "iresnet100",
]


def build_backbone(name: str, in_channels: int, embedding_dim: int, **options: Any) -> nn.Module:
    """A backbone that maps images to ``embedding_dim`` features (not normalised).

    ``options`` are the backbone's own keyword arguments (e.g. ``width``, ``last_stride``,
    ``weights``); an option the backbone does not take is an error naming the ones it does.
    """
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; allowed: {sorted(BACKBONES)}") from None
    allowed = set(inspect.signature(factory).parameters) - {"in_channels", "embedding_dim"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"backbone {name!r} takes no option(s) {unknown}; allowed: {sorted(allowed)}")
    return factory(in_channels=in_channels, embedding_dim=embedding_dim, **options)
