"""A torch Dataset over one split of a prepared data set's manifest.

Each item is read through :class:`~circle_repro.data.image_reader.ImageReader` (a loose file or a pack
record), decoded to a uint8 tensor (:func:`~circle_repro.data.image_decode.decode_image`) and passed
through the pixel half of the split's transform (:class:`~circle_repro.data.transforms.PixelTransform`):
items stay uint8, and the float conversion, normalisation and random erasing run on the model's device
(:mod:`circle_repro.engine.batch_transfer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from circle_repro.data.image_decode import decode_image
from circle_repro.data.image_reader import ImageReader
from circle_repro.data.manifest import read_manifest
from circle_repro.data.transforms import IMAGE_MODES, build_pixel_transform


class ManifestDataset(Dataset):
    """Images and labels of one split; items are ``{"inputs": uint8 CHW tensor, "labels": int64 tensor}``, and
    ``"erase"`` (the random erasing rectangle, :meth:`~circle_repro.data.transforms.PixelTransform.erase_box`)
    where the pipeline erases.

    ``labels`` are class indices 0..C-1 in the order of ``classes`` (the sorted original ids).
    ``transform`` names the task style; ``backbone`` and ``image_size`` complete it
    (:func:`~circle_repro.data.transforms.build_transform`).
    """

    def __init__(
        self,
        data_root: str | Path,
        split: str,
        transform: str,
        train: bool,
        max_images: int | None = None,
        seed: int = 0,
        backbone: str | None = None,
        image_size: list[int] | None = None,
    ) -> None:
        self.data_root = Path(data_root)
        frame = read_manifest(self.data_root, split=split)
        if max_images is not None and max_images < len(frame):
            # A class-stratified subsample keeps every class, so P x K sampling still works.
            frame = (
                frame.groupby("label", group_keys=False)
                .sample(frac=max_images / len(frame), random_state=seed)
                .sort_index()
                .reset_index(drop=True)
            )
        self.frame = frame
        self.classes = np.unique(frame["label"].to_numpy(dtype=np.int64))
        # Class-level heads need labels 0..C-1; the original ids stay in ``frame["label"]``.
        self.labels = np.searchsorted(self.classes, frame["label"].to_numpy(dtype=np.int64))
        self.pipeline = build_pixel_transform(transform, train=train, backbone=backbone, image_size=image_size)
        self.image_mode = IMAGE_MODES[transform]
        self.images = ImageReader(self.data_root, frame["path"].to_numpy())

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Item ``key``: an index, whose random augmentation draws from torch's RNG as it stands, or
        ``(index, seed)``, whose augmentation draws from an RNG seeded with ``seed`` alone (torch's own is left
        as it was): the same in any process, so that which loader worker loads an image changes nothing."""
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._item(index)
        return self._item(key)

    def _item(self, index: int) -> dict[str, Any]:
        inputs = self.pipeline.pixels(decode_image(self.images.read(index), self.image_mode))
        item = {"inputs": inputs, "labels": torch.tensor(self.labels[index])}
        if self.pipeline.erasing is not None:
            item["erase"] = self.pipeline.erase_box(inputs)
        return item
