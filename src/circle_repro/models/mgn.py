"""MGN (Wang et al. 2018, Multiple Granularity Network) on ResNet-50, with one concatenated embedding.

The ResNet-50 trunk is shared up to the first block of ``layer3``; three branches each get their
own copy of the rest of ``layer3`` and of ``layer4``: the global branch keeps ``layer4``'s
stride 2, the part-2 and part-3 branches use stride 1. Each branch is max-pooled globally, and
the part branches are also max-pooled in 2 and 3 horizontal stripes, giving 8 features
(3 global + 5 parts). Each is reduced by linear + BN to ``embedding_dim / 8`` (256 of 2048 in
MGN) and the 8 are concatenated into one vector, trained with a single loss as the Circle loss
paper does. The reduction has no ReLU (as fast-reid's MGN heads), so cosine similarities are
not confined to be non-negative.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from circle_repro.models.resnet50 import EmbeddingNeck, load_torchvision_resnet50, resnet50_trunk, trunk_channels
from circle_repro.models.weights import WeightsPath

PARTS = (2, 3)
FEATURES = 1 + len(PARTS) + sum(PARTS)  # one global feature per branch, plus the stripes


class MGN(nn.Module):
    """ResNet-50 MGN: global, part-2 and part-3 branches -> 8 reduced features, concatenated.

    ``weights``: a local torchvision ResNet-50 ImageNet checkpoint, copied into every branch.
    """

    def __init__(
        self,
        in_channels: int = 3,
        embedding_dim: int = 2048,
        bnneck: bool = False,
        width: float = 1.0,
        weights: WeightsPath | None = None,
    ) -> None:
        super().__init__()
        if embedding_dim % FEATURES:
            raise ValueError(
                f"MGN embedding_dim must be a multiple of {FEATURES} (one slice per feature), got {embedding_dim}"
            )
        resnet = resnet50_trunk(in_channels, width)
        if weights is not None:
            load_torchvision_resnet50(resnet, weights)
        self.shared = nn.Sequential(*list(resnet.children())[:-2], resnet.layer3[0])
        part_conv5 = resnet50_trunk(in_channels, width, last_stride=1).layer4
        part_conv5.load_state_dict(resnet.layer4.state_dict())
        self.branches = nn.ModuleList(
            nn.Sequential(copy.deepcopy(resnet.layer3[1:]), copy.deepcopy(conv5))
            for conv5 in (resnet.layer4, part_conv5, part_conv5)
        )
        self.stripe_pools = nn.ModuleList(nn.AdaptiveMaxPool2d((stripes, 1)) for stripes in PARTS)
        channels = trunk_channels(resnet)
        self.necks = nn.ModuleList(EmbeddingNeck(channels, embedding_dim // FEATURES, bnneck) for _ in range(FEATURES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        shared = self.shared(images)
        maps = [branch(shared) for branch in self.branches]
        # The 3 global features first, then the 2 + 3 stripes (fast-reid's order).
        features = [feature_map.amax(dim=(2, 3)) for feature_map in maps]
        for pool, feature_map in zip(self.stripe_pools, maps[1:], strict=True):
            features.extend(pool(feature_map).flatten(2).unbind(dim=2))
        return torch.cat([neck(feature) for neck, feature in zip(self.necks, features, strict=True)], dim=1)
