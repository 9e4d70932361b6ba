"""Image transforms per task style and backbone: train and test versions of each recipe's input pipeline.

The style fixes the geometry and the augmentation:

| style | input | train | test | source |
|---|---|---|---|---|
| mnist | 28×28 grey | affine jitter (±10°, ±10 %) | none | |
| face | 112×112 RGB (aligned crops) | horizontal flip | none | insightface |
| reid | 256×128 RGB | flip, pad 10 + random crop, random erasing p=0.5 | resize | fast-reid (Base-bagtricks.yml) |
| retrieval | RGB, any size | resize 256, random resized crop 227 (scale 0.16-1), flip | resize 256, centre crop 227 | research-ms-loss (INPUT defaults) |

The backbone fixes the pixel normalisation: the one its pretrained weights were trained with
(:data:`BACKBONE_NORMALISATION`). Cadene's BN-Inception takes BGR in [0, 255] minus
(104, 117, 128), std 1 (research-ms-loss ``INPUT.MODE 'BGR'``, ``PIXEL_MEAN``, ``PIXEL_STD``);
torchvision's ResNet-50 (and MGN on it) RGB in [0, 1] with ImageNet mean/std; IResNet RGB mapped
to [−1, 1] (insightface). A backbone trained from scratch (or none named) takes the style's own
normalisation (:data:`STYLE_NORMALISATION`). Face images that are not 112×112 are resized to it;
a re-ID ``image_size`` replaces 256×128 (fast-reid's MGN trains at 384×128). The paper states none
of these pipelines beyond the input sizes (Sun et al. §4.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from PIL import Image
from torchvision.transforms import v2

Transform = Callable[[Image.Image], torch.Tensor]


class Normalisation(NamedTuple):
    """How pixels reach a network: channel order, value scale, then ``(x - mean) / std`` per channel.

    ``mean`` and ``std`` are in the network's channel order and on its value scale.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    byte_scale: bool = False  # pixels in [0, 255] (else [0, 1])
    bgr: bool = False


MNIST = Normalisation((0.1307,), (0.3081,))
INSIGHTFACE = Normalisation((0.5,) * 3, (0.5,) * 3)
IMAGENET = Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CADENE_BN_INCEPTION = Normalisation((104.0, 117.0, 128.0), (1.0, 1.0, 1.0), byte_scale=True, bgr=True)

#: The normalisation of each backbone's pretrained weights; None: trained from scratch, the style's.
BACKBONE_NORMALISATION: dict[str, Normalisation | None] = {
    "small_cnn": None,
    "resnet50": IMAGENET,
    "mgn": IMAGENET,
    "bn_inception": CADENE_BN_INCEPTION,
    "iresnet34": INSIGHTFACE,
    "iresnet100": INSIGHTFACE,
}

FACE_SIZE = (112, 112)
REID_SIZE = (256, 128)
RETRIEVAL_RESIZE, RETRIEVAL_CROP, RETRIEVAL_CROP_SCALE = 256, 227, (0.16, 1.0)


def _to_bgr(image: torch.Tensor) -> torch.Tensor:
    return image.flip(-3)


def _to_float(normalisation: Normalisation) -> list[v2.Transform]:
    """uint8 image tensor -> float32 in the network's channel order, scale and normalisation."""
    steps: list[v2.Transform] = [v2.ToDtype(torch.float32, scale=not normalisation.byte_scale)]
    if normalisation.bgr:
        steps.append(v2.Lambda(_to_bgr))
    return [*steps, v2.Normalize(normalisation.mean, normalisation.std)]


class PixelTransform(NamedTuple):
    """A style's pipeline in the parts that run where: ``pixels`` (geometry and random augmentation, a uint8
    image tensor in, a uint8 CHW tensor out: DataLoader workers), then ``normalisation`` (float conversion,
    channel order, ``(x - mean) / std``: on the device, in batches), then random erasing of the normalised
    image where ``erasing`` is set (its rectangle drawn with the pixels, applied on the device)."""

    pixels: v2.Compose
    normalisation: Normalisation
    erasing: v2.RandomErasing | None = None

    def erase_box(self, image: torch.Tensor) -> torch.Tensor:
        """The rectangle that ``erasing`` erases in (the normalised) ``image``, drawn with the random calls
        that ``erasing(image)`` makes: int64 ``[top, left, height, width]``, height 0 when it erases nothing."""
        if self.erasing is None:
            raise ValueError("this pipeline erases nothing")
        if torch.rand(1) >= self.erasing.p:
            return torch.zeros(4, dtype=torch.int64)
        params = self.erasing.make_params([image])
        if params["v"] is None:  # no rectangle fitted in ten tries
            return torch.zeros(4, dtype=torch.int64)
        return torch.tensor([params["i"], params["j"], params["h"], params["w"]], dtype=torch.int64)


StyleSteps = tuple[list[v2.Transform], v2.RandomErasing | None]
"""A style's pixel steps, and the random erasing of its normalised image (None: none)."""


def _mnist(train: bool, image_size: tuple[int, int] | None) -> StyleSteps:
    augment = [v2.RandomAffine(degrees=10, translate=(0.1, 0.1))] if train else []
    return [v2.PILToTensor(), *augment], None


def _face(train: bool, image_size: tuple[int, int] | None) -> StyleSteps:
    augment = [v2.RandomHorizontalFlip()] if train else []
    return [v2.Resize(FACE_SIZE), *augment, v2.PILToTensor()], None


def _reid(train: bool, image_size: tuple[int, int] | None) -> StyleSteps:
    size = image_size or REID_SIZE
    if not train:
        return [v2.Resize(size), v2.PILToTensor()], None
    steps = [v2.Resize(size), v2.RandomHorizontalFlip(), v2.Pad(10), v2.RandomCrop(size), v2.PILToTensor()]
    return steps, v2.RandomErasing(p=0.5)


def _retrieval(train: bool, image_size: tuple[int, int] | None) -> StyleSteps:
    if train:
        steps = [
            v2.Resize(RETRIEVAL_RESIZE),
            v2.RandomResizedCrop(RETRIEVAL_CROP, scale=RETRIEVAL_CROP_SCALE),
            v2.RandomHorizontalFlip(),
        ]
    else:
        steps = [v2.Resize(RETRIEVAL_RESIZE), v2.CenterCrop(RETRIEVAL_CROP)]
    return [*steps, v2.PILToTensor()], None


#: Each style's pixel steps and random erasing (of the normalised image), for (train, image_size).
TRANSFORMS: dict[str, Callable[[bool, tuple[int, int] | None], StyleSteps]] = {
    "mnist": _mnist,
    "face": _face,
    "reid": _reid,
    "retrieval": _retrieval,
}

#: The normalisation of each style when the backbone brings none of its own.
STYLE_NORMALISATION: dict[str, Normalisation] = {
    "mnist": MNIST,
    "face": INSIGHTFACE,
    "reid": IMAGENET,
    "retrieval": IMAGENET,
}

#: The styles whose output size ``image_size`` may set.
RESIZABLE_STYLES = ("reid",)

# The image mode (PIL) each transform family expects.
IMAGE_MODES: dict[str, str] = {"mnist": "L", "face": "RGB", "reid": "RGB", "retrieval": "RGB"}


def normalisation_for(name: str, backbone: str | None = None) -> Normalisation:
    """The pixel normalisation of style ``name`` for ``backbone``: its pretrained weights', else the style's."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; allowed: {sorted(TRANSFORMS)}")
    if backbone is not None and backbone not in BACKBONE_NORMALISATION:
        raise ValueError(
            f"unknown backbone {backbone!r} for the input normalisation; allowed: {sorted(BACKBONE_NORMALISATION)}"
        )
    own = BACKBONE_NORMALISATION[backbone] if backbone is not None else None
    return own or STYLE_NORMALISATION[name]


def build_pixel_transform(
    name: str, train: bool, backbone: str | None = None, image_size: Sequence[int] | None = None
) -> PixelTransform:
    """The train or test pipeline of a task style for ``backbone``'s weights, split where it leaves uint8
    (:class:`PixelTransform`). ``image_size`` (height, width) replaces the style's output size (re-ID
    styles only)."""
    normalisation = normalisation_for(name, backbone)
    if image_size is not None:
        if name not in RESIZABLE_STYLES:
            raise ValueError(f"image_size is a setting of the {list(RESIZABLE_STYLES)} transforms, not of {name!r}")
        if len(image_size) != 2 or any(
            isinstance(side, bool) or not isinstance(side, int) or side < 1 for side in image_size
        ):
            raise ValueError(f"image_size must be [height, width] in pixels, got {image_size!r}")
        image_size = (int(image_size[0]), int(image_size[1]))
    steps, erasing = TRANSFORMS[name](train, image_size)
    return PixelTransform(v2.Compose(steps), normalisation, erasing)


def build_transform(
    name: str, train: bool, backbone: str | None = None, image_size: Sequence[int] | None = None
) -> Transform:
    """The train or test transform of a task style, normalised for ``backbone``'s weights, as one pipeline
    on one image (a PIL image or uint8 tensor in, the network's float32 input out).

    ``image_size`` (height, width) replaces the style's output size (re-ID styles only).
    """
    pixels, normalisation, erasing = build_pixel_transform(name, train, backbone, image_size)
    return v2.Compose([*pixels.transforms, *_to_float(normalisation), *([erasing] if erasing is not None else [])])
