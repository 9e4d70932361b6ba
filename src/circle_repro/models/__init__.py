"""Backbones and embedding heads, by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from circle_repro.models.small_cnn import SmallCNN

BACKBONES: dict[str, Callable[..., nn.Module]] = {"small_cnn": SmallCNN}


def build_backbone(name: str, in_channels: int, embedding_dim: int) -> nn.Module:
    """A backbone that maps images to ``embedding_dim`` features (not normalised)."""
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; allowed: {sorted(BACKBONES)}") from None
    return factory(in_channels=in_channels, embedding_dim=embedding_dim)
