"""A transform pipeline with its float conversion and normalisation done as one multiply-add per pixel.

``build_transform`` ends its pipelines with ``ToDtype(float32, scale=...)`` then ``Normalize(mean, std)``:
two passes over the image, each allocating a float image, plus the dispatch of two v2 transforms. On
uint8 tensors (what :func:`~circle_repro.data.image_decode.decode_image` gives) the pair is the affine
map ``x * scale / std - mean / std`` per channel, computed here in one pass; the values agree with the
pair's to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2


class ScaledNormalize:
    """``Normalize(mean, std)(ToDtype(float32, scale)(image))`` for a uint8 (or float) image tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: bool) -> None:
        mean_t = torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)
        self.mean, self.std, self.scale = list(mean), list(std), scale
        self._uint8_factor = ((1 / 255 if scale else 1.0) / std_t).to(torch.float32)
        self._factor = (1 / std_t).to(torch.float32)
        self._offset = (-mean_t / std_t).to(torch.float32)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        factor = self._uint8_factor if image.dtype == torch.uint8 else self._factor
        return image.to(torch.float32).mul_(factor).add_(self._offset)

    def __repr__(self) -> str:
        return f"ScaledNormalize(mean={self.mean}, std={self.std}, scale={self.scale})"


def _fusable(first: Any, second: Any) -> bool:
    return (
        isinstance(first, v2.ToDtype)
        and first.dtype in (torch.float32, {torch.Tensor: torch.float32})
        and isinstance(second, v2.Normalize)
    )


def fuse_normalisation(transform: Callable[[Any], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
    """``transform`` (a ``v2.Compose``) with each ``ToDtype(float32)`` + ``Normalize`` pair replaced by one
    :class:`ScaledNormalize`, for tensor inputs; anything else is returned unchanged."""
    if not isinstance(transform, v2.Compose):
        return transform
    steps: list[Any] = []
    rest = list(transform.transforms)
    while rest:
        step = rest.pop(0)
        if rest and _fusable(step, rest[0]):
            normalize = rest.pop(0)
            steps.append(ScaledNormalize(normalize.mean, normalize.std, step.scale))
        else:
            steps.append(step)
    return v2.Compose(steps)


__all__ = ["ScaledNormalize", "fuse_normalisation"]
