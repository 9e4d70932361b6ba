"""Image transforms per task style, by name: train and test versions of each recipe's input pipeline.

| style | input | train | test | normalisation |
|---|---|---|---|---|
| mnist | 28×28 grey | affine jitter (±10°, ±10 %) | none | MNIST mean/std |
| face | 112×112 RGB (aligned crops) | horizontal flip | none | to [−1, 1] (insightface) |
| reid | 256×128 RGB | flip, pad 10 + random crop, random erasing p=0.5 | resize | ImageNet mean/std (fast-reid) |
| retrieval | RGB, any size | resize 256, random crop 227, flip | resize 256, centre crop 227 | ImageNet mean/std |

Face images that are not 112×112 are resized to it. The paper states none of these pipelines
beyond the input sizes (spec §2); they follow the reference code bases named above.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2

Transform = Callable[[Image.Image], torch.Tensor]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FACE_SIZE = (112, 112)
REID_SIZE = (256, 128)
RETRIEVAL_RESIZE, RETRIEVAL_CROP = 256, 227


def _to_float(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _mnist(train: bool) -> Transform:
    augment = [v2.RandomAffine(degrees=10, translate=(0.1, 0.1))] if train else []
    return v2.Compose([v2.PILToTensor(), *augment, *_to_float(MNIST_MEAN, MNIST_STD)[1:]])


def _face(train: bool) -> Transform:
    augment = [v2.RandomHorizontalFlip()] if train else []
    return v2.Compose([v2.Resize(FACE_SIZE), *augment, *_to_float((0.5,) * 3, (0.5,) * 3)])


def _reid(train: bool) -> Transform:
    if not train:
        return v2.Compose([v2.Resize(REID_SIZE), *_to_float(IMAGENET_MEAN, IMAGENET_STD)])
    return v2.Compose([
        v2.Resize(REID_SIZE),
        v2.RandomHorizontalFlip(),
        v2.Pad(10),
        v2.RandomCrop(REID_SIZE),
        *_to_float(IMAGENET_MEAN, IMAGENET_STD),
        v2.RandomErasing(p=0.5),
    ])


def _retrieval(train: bool) -> Transform:
    if train:
        steps = [v2.Resize(RETRIEVAL_RESIZE), v2.RandomCrop(RETRIEVAL_CROP), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(RETRIEVAL_RESIZE), v2.CenterCrop(RETRIEVAL_CROP)]
    return v2.Compose([*steps, *_to_float(IMAGENET_MEAN, IMAGENET_STD)])


TRANSFORMS: dict[str, Callable[[bool], Transform]] = {
    "mnist": _mnist, "face": _face, "reid": _reid, "retrieval": _retrieval,
}

# The image mode (PIL) each transform family expects.
IMAGE_MODES: dict[str, str] = {"mnist": "L", "face": "RGB", "reid": "RGB", "retrieval": "RGB"}


def build_transform(name: str, train: bool) -> Transform:
    """The train or test transform of a task style."""
    try:
        return TRANSFORMS[name](train)
    except KeyError:
        raise ValueError(f"unknown transform {name!r}; allowed: {sorted(TRANSFORMS)}") from None
