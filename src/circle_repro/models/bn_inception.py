"""BN-Inception (Ioffe & Szegedy 2015) as ported by Cadene's pretrainedmodels ``bninception``.

This is the metric-learning variant (Lifted Structure, Multi-Similarity code): a 7x7/2 stem
and a 1x1 -> 3x3 stem conv, both followed by 3x3/2 max pools with ceil mode; ten inception
blocks 3a-5b (3c and 4e halve the resolution); every conv has a bias and is followed by BN and
ReLU. The trunk gives 1024 channels, then global pooling and a linear embedding.

research-ms-loss (``modeling/backbone/bninception.py``, ``heads/linear_norm.py``,
``utils/freeze_bn.py``) trains it for retrieval with global **max** pooling, a Kaiming-initialised
embedding and every BatchNorm kept in eval mode (running statistics frozen, affine parameters
trained); ``pool="max"`` and ``freeze_bn=True`` select that recipe.

Cadene's ImageNet checkpoint expects **BGR** images in [0, 255] minus the mean (104, 117, 128)
(std 1), not torchvision's RGB normalisation; its BN vectors are stored as 1 x C.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from circle_repro.models.resnet50 import scaled
from circle_repro.models.weights import PublishedWeights, WeightsPath, load_into, read_checkpoint

CADENE_BNINCEPTION = (
    PublishedWeights(
        "Cadene pretrainedmodels BN-Inception (ImageNet)",
        "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
    ),
)


class Block(NamedTuple):
    """Channels of one inception block; 0 means the branch is absent (reduction blocks)."""

    name: str
    conv_1x1: int
    reduce_3x3: int
    conv_3x3: int
    reduce_double: int
    conv_double: int
    pool_proj: int
    stride: int  # 2: the 3x3 branches stride and the pool branch is a 3x3/2 max pool, passed through
    max_pool: bool = False  # pool branch: max instead of average (5b)


# Cadene bninception / pytorchcv bninception channel table (output = sum of the branches).
BLOCKS = (
    Block("inception_3a", 64, 64, 64, 64, 96, 32, 1),
    Block("inception_3b", 64, 64, 96, 64, 96, 64, 1),
    Block("inception_3c", 0, 128, 160, 64, 96, 0, 2),
    Block("inception_4a", 224, 64, 96, 96, 128, 128, 1),
    Block("inception_4b", 192, 96, 128, 96, 128, 128, 1),
    Block("inception_4c", 160, 128, 160, 128, 160, 128, 1),
    Block("inception_4d", 96, 128, 192, 160, 192, 128, 1),
    Block("inception_4e", 0, 128, 192, 192, 256, 0, 2),
    Block("inception_5a", 352, 192, 320, 160, 224, 128, 1),
    Block("inception_5b", 352, 192, 320, 192, 224, 128, 1, max_pool=True),
)


def _unit(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """conv (with bias) -> BN -> ReLU."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2),
            bn=nn.BatchNorm2d(out_channels),
            relu=nn.ReLU(inplace=True),
        )
    )


class InceptionBlock(nn.ModuleDict):
    """Parallel 1x1, 1x1->3x3, 1x1->3x3->3x3 and pool(->1x1) branches, concatenated."""

    def __init__(self, block: Block, in_channels: int, width: float) -> None:
        super().__init__()
        self.block = block
        conv_1x1, reduce_3x3, conv_3x3, reduce_double, conv_double, pool_proj = (
            scaled(count, width) if count else 0
            for count in (
                block.conv_1x1,
                block.reduce_3x3,
                block.conv_3x3,
                block.reduce_double,
                block.conv_double,
                block.pool_proj,
            )
        )
        if conv_1x1:
            self["1x1"] = _unit(in_channels, conv_1x1)
        self["3x3_reduce"] = _unit(in_channels, reduce_3x3)
        self["3x3"] = _unit(reduce_3x3, conv_3x3, 3, block.stride)
        self["double_3x3_reduce"] = _unit(in_channels, reduce_double)
        self["double_3x3_1"] = _unit(reduce_double, conv_double, 3)
        self["double_3x3_2"] = _unit(conv_double, conv_double, 3, block.stride)
        if block.stride == 2:
            self["pool"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        elif block.max_pool:
            self["pool"] = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        else:
            self["pool"] = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        if pool_proj:
            self["pool_proj"] = _unit(in_channels, pool_proj)
        self.out_channels = conv_1x1 + conv_3x3 + conv_double + (pool_proj or in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.block.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(
                f"BN-Inception block {self.block.name} halves an odd {x.shape[-2]}x{x.shape[-1]} feature map, "
                "which its conv and ceil-mode pool branches round differently; use an input size that is a "
                "multiple of 32 (e.g. 224) or 227"
            )
        branches = [self["1x1"](x)] if "1x1" in self else []
        branches.append(self["3x3"](self["3x3_reduce"](x)))
        branches.append(self["double_3x3_2"](self["double_3x3_1"](self["double_3x3_reduce"](x))))
        pooled = self["pool"](x)
        branches.append(self["pool_proj"](pooled) if "pool_proj" in self else pooled)
        return torch.cat(branches, dim=1)


def bn_inception_trunk(in_channels: int = 3, width: float = 1.0) -> nn.Sequential:
    """Stem and blocks 3a-5b: ``1024 * width`` channels at 1/32 of the input (7 x 7 at 224 or 227)."""
    stem_64, stem_192 = scaled(64, width), scaled(192, width)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1_7x7_s2=_unit(in_channels, stem_64, 7, 2),
        pool1_3x3_s2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
        conv2_3x3_reduce=_unit(stem_64, stem_64),
        conv2_3x3=_unit(stem_64, stem_192, 3),
        pool2_3x3_s2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
    )
    channels = stem_192
    for block in BLOCKS:
        layers[block.name] = InceptionBlock(block, channels, width)
        channels = layers[block.name].out_channels
    trunk = nn.Sequential(layers)
    trunk.out_channels = channels
    return trunk


def cadene_key(key: str) -> str:
    """The Cadene checkpoint name of a trunk state-dict key.

    ``inception_3a.1x1.conv.weight`` -> ``inception_3a_1x1.weight``,
    ``conv1_7x7_s2.bn.running_mean`` -> ``conv1_7x7_s2_bn.running_mean``.
    """
    *path, layer, parameter = key.split(".")
    return "_".join(path) + ("_bn" if layer == "bn" else "") + "." + parameter


def load_cadene_bn_inception(trunk: nn.Sequential, weights: WeightsPath) -> None:
    """Fill a full-width, 3-channel trunk from Cadene's local ImageNet checkpoint (``last_linear`` dropped)."""
    state = read_checkpoint(weights, CADENE_BNINCEPTION)
    load_into(
        trunk,
        state,
        source=f"BN-Inception checkpoint {weights}",
        rename=cadene_key,
        ignore=lambda key: key.startswith("last_linear."),
    )


GLOBAL_POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


class BNInceptionEmbedding(nn.Module):
    """BN-Inception trunk -> global pooling -> linear ``embedding_dim`` (512 in the paper).

    ``weights``: Cadene's local ImageNet checkpoint (file, or folder holding it under its
    published name); ``width`` scales every channel count (1.0 is the real network).
    ``pool``: global ``"avg"`` (Cadene's ImageNet network) or ``"max"`` pooling (research-ms-loss).
    ``freeze_bn``: every BatchNorm stays in eval mode, also after ``train()`` (research-ms-loss's
    ``set_bn_eval``): batches neither update nor use their own statistics; gamma and beta still train.
    """

    def __init__(
        self,
        in_channels: int = 3,
        embedding_dim: int = 512,
        width: float = 1.0,
        weights: WeightsPath | None = None,
        pool: str = "avg",
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        if pool not in GLOBAL_POOLS:
            raise ValueError(f"BN-Inception pool must be one of {sorted(GLOBAL_POOLS)}, got {pool!r}")
        if not isinstance(freeze_bn, bool):
            raise ValueError(f"BN-Inception freeze_bn must be a bool, got {freeze_bn!r}")
        self.freeze_bn = freeze_bn
        self.trunk = bn_inception_trunk(in_channels, width)
        if weights is not None:
            load_cadene_bn_inception(self.trunk, weights)
        self.pool = GLOBAL_POOLS[pool](1)
        self.embedding = nn.Linear(self.trunk.out_channels, embedding_dim)
        nn.init.kaiming_normal_(self.embedding.weight, mode="fan_out")  # research-ms-loss weights_init_kaiming
        nn.init.zeros_(self.embedding.bias)
        self.train()

    def train(self, mode: bool = True) -> BNInceptionEmbedding:
        """Set training mode; with ``freeze_bn`` every BatchNorm stays in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.pool(self.trunk(images)).flatten(1))
