"""Every backbone is built by name, with its own options, and gives the requested embedding size."""

from __future__ import annotations

import pytest
import torch

from circle_repro.models import BACKBONES, build_backbone

TINY = {  # name -> (options for a narrow smoke-size model, input height and width)
    "small_cnn": ({}, (28, 28)),
    "resnet50": ({"width": 1 / 16, "last_stride": 1, "bnneck": True}, (64, 32)),
    "bn_inception": ({"width": 1 / 16}, (64, 64)),
    "iresnet34": ({"width": 1 / 16, "input_size": 32}, (32, 32)),
    "iresnet100": ({"width": 1 / 16, "input_size": 32}, (32, 32)),
    "mgn": ({"width": 1 / 16}, (96, 32)),
}


def test_every_registered_backbone_has_a_smoke_case() -> None:
    assert set(BACKBONES) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_backbone_by_name_gives_the_embedding_size(name: str) -> None:
    options, size = TINY[name]
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=1, embedding_dim=32, **options)
    assert model(torch.randn(2, 1, *size)).shape == (2, 32)


def test_unknown_backbone_or_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet51'"):
        build_backbone("resnet51", in_channels=3, embedding_dim=8)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['width'\]; allowed: \[\]"):
        build_backbone("small_cnn", in_channels=1, embedding_dim=8, width=0.5)
