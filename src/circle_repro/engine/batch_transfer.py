"""Image batches from a DataLoader to a network's input, on the network's device.

DataLoader workers hand over uint8 batches (a quarter of the bytes of float32 through their queues and
into pinned memory); the float conversion, channel order and ``(x - mean) / std`` of the backbone's
:class:`~circle_repro.data.transforms.Normalisation` run here, on the whole batch where the model is,
followed by the random erasing whose rectangles the workers drew
(:class:`~circle_repro.data.transforms.PixelTransform`). Training (through
:class:`ImageBatchPreprocessor`, the model's mmengine data preprocessor), validation and evaluation
all go through :class:`NetworkInput`. The values agree with
:func:`~circle_repro.data.transforms.build_transform`'s on one image to float32 rounding: the
conversion and normalisation are the per-channel affine map ``x * scale / std - mean / std``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import MODELS

from circle_repro.data.transforms import Normalisation, PixelTransform, build_pixel_transform


class NetworkInput:
    """uint8 image batches (N x C x H x W) -> the float32 input of a network normalised by ``normalisation``,
    with the rectangles of ``erase`` (int64 N x 4: top, left, height, width; height 0 erases nothing) set to
    ``erase_value`` after normalising."""

    def __init__(self, normalisation: Normalisation, erase_value: Sequence[float] = (0.0,)) -> None:
        mean = torch.tensor(normalisation.mean, dtype=torch.float64).view(1, -1, 1, 1)
        std = torch.tensor(normalisation.std, dtype=torch.float64).view(1, -1, 1, 1)
        self.normalisation = normalisation
        factor = ((1.0 if normalisation.byte_scale else 1 / 255) / std).to(torch.float32)
        erase = torch.tensor(list(erase_value), dtype=torch.float32).view(1, -1, 1, 1)
        self._constants = (factor, (-mean / std).to(torch.float32), erase)
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}  # copied to each device once

    @classmethod
    def of(cls, pipeline: PixelTransform) -> NetworkInput:
        """The device half of a pipeline whose pixel half runs in the DataLoader."""
        if pipeline.erasing is None:
            return cls(pipeline.normalisation)
        if pipeline.erasing.value is None:
            raise ValueError("random erasing with random values cannot be drawn apart from the image")
        return cls(pipeline.normalisation, pipeline.erasing.value)

    def __call__(
        self, inputs: torch.Tensor, device: torch.device | str | None = None, erase: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``inputs`` (moved to ``device`` first, when given, without blocking) as the network takes them."""
        if inputs.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 image batch (what ManifestDataset yields), got {inputs.dtype}")
        if device is not None:
            inputs = inputs.to(device, non_blocking=True)
        if self.normalisation.bgr:
            inputs = inputs.flip(1)
        factor, offset, erase_value = self._constants_on(inputs.device)
        images = inputs.to(torch.float32).mul_(factor).add_(offset)
        return images if erase is None else self._erase(images, erase.to(images.device), erase_value)

    def _constants_on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._on_device:
            self._on_device[device] = tuple(constant.to(device) for constant in self._constants)
        return self._on_device[device]

    @staticmethod
    def _erase(images: torch.Tensor, boxes: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        top, left, height, width = (side[:, None] for side in boxes.unbind(1))
        rows = torch.arange(images.shape[-2], device=images.device)[None, :]
        cols = torch.arange(images.shape[-1], device=images.device)[None, :]
        in_rows = (rows >= top) & (rows < top + height)
        in_cols = (cols >= left) & (cols < left + width)
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        return torch.where(mask, value, images)


@MODELS.register_module()
class ImageBatchPreprocessor(BaseDataPreprocessor):
    """The model's mmengine data preprocessor in training: moves a batch of
    :class:`~circle_repro.data.manifest_dataset.ManifestDataset` items to the model's device and turns its
    uint8 ``inputs`` (and ``erase`` rectangles) into the network's input (:class:`NetworkInput`) for the
    train pipeline of style ``transform``, ``backbone`` and ``image_size``."""

    def __init__(self, transform: str, backbone: str | None = None, image_size: list[int] | None = None) -> None:
        super().__init__(non_blocking=True)
        self.network_input = NetworkInput.of(build_pixel_transform(transform, True, backbone, image_size))

    def forward(self, data: dict[str, Any], training: bool = False) -> dict[str, Any]:
        data = self.cast_data(data)
        data["inputs"] = self.network_input(data["inputs"], erase=data.pop("erase", None))
        return data


__all__ = ["ImageBatchPreprocessor", "NetworkInput"]
