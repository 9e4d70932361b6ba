"""Synthetic images in the real encodings: deterministic for a seed, at any size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _pixels(seed: int, height: int, width: int, smooth: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not smooth:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # blobs of colour (noise at 1/8 resolution, enlarged) plus fine grain: a JPEG of photo-like size and decode cost
    coarse = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.int16)
    grain = rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def encode_image(seed: int, height: int, width: int, *, image_format: str = "JPEG", smooth: bool = True) -> bytes:
    """An RGB image of ``height`` x ``width`` encoded as ``image_format`` (JPEG or PNG); ``smooth``: photo-like
    blobs of colour, else uniform noise."""
    buffer = io.BytesIO()
    options = {"quality": 90} if image_format == "JPEG" else {}
    Image.fromarray(_pixels(seed, height, width, smooth)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise_jpeg(seed: int, size: int = 16) -> bytes:
    """A small square JPEG of RGB noise, deterministic for a seed."""
    return encode_image(seed, size, size, smooth=False)


__all__ = ["encode_image", "noise_jpeg"]
