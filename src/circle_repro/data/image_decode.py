"""Decoding an encoded image into a uint8 tensor, the input of the transforms."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

JPEG_SOI = b"\xff\xd8"


def decode_image(data: bytes, mode: str) -> torch.Tensor:
    """Decoded pixels (uint8, channels x height x width) of an encoded image in PIL ``mode`` (``RGB`` or ``L``).

    An RGB JPEG goes through torchvision's libjpeg-turbo decoder, which gives PIL's pixels without PIL's
    per-image Python overhead; anything else (and a JPEG that decoder refuses) through PIL.
    """
    if mode == "RGB" and data[:2] == JPEG_SOI:
        try:
            with warnings.catch_warnings():  # torchvision >= 0.29 announces a move of its decoders to TorchCodec
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # e.g. a CMYK variant this build rejects: PIL decides
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.array(image if image.mode == mode else image.convert(mode))
    tensor = torch.from_numpy(pixels)
    return tensor.permute(2, 0, 1).contiguous() if tensor.ndim == 3 else tensor.unsqueeze(0)


__all__ = ["decode_image"]
