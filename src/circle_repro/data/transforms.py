"""Image transforms per task style, by name."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2

Transform = Callable[[Image.Image], torch.Tensor]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def _mnist(train: bool) -> Transform:
    steps = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MNIST_MEAN, MNIST_STD)]
    if train:
        steps.insert(1, v2.RandomAffine(degrees=10, translate=(0.1, 0.1)))
    return v2.Compose(steps)


TRANSFORMS: dict[str, Callable[[bool], Transform]] = {"mnist": _mnist}

# The image mode (PIL) each transform family expects.
IMAGE_MODES: dict[str, str] = {"mnist": "L"}


def build_transform(name: str, train: bool) -> Transform:
    """The train or test transform of a task style."""
    try:
        return TRANSFORMS[name](train)
    except KeyError:
        raise ValueError(f"unknown transform {name!r}; allowed: {sorted(TRANSFORMS)}") from None
