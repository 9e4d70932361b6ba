"""Task transforms: output shapes, value ranges, and train-only augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from circle_repro.data.transforms import IMAGE_MODES, TRANSFORMS, build_transform


def _image(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode)


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("mnist", (28, 28), (1, 28, 28)),
        ("face", (112, 112), (3, 112, 112)),
        ("face", (96, 120), (3, 112, 112)),
        ("reid", (64, 160), (3, 256, 128)),
        ("retrieval", (300, 400), (3, 227, 227)),
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_output_shape(name, size, expected, train):
    torch.manual_seed(0)
    out = build_transform(name, train=train)(_image(IMAGE_MODES[name], *size))
    assert out.dtype == torch.float32
    assert tuple(out.shape) == expected


def test_face_maps_pixels_to_minus_one_one():
    white = Image.new("RGB", (112, 112), (255, 255, 255))
    black = Image.new("RGB", (112, 112), (0, 0, 0))
    face = build_transform("face", train=False)
    assert torch.equal(face(white), torch.ones(3, 112, 112))
    assert torch.equal(face(black), -torch.ones(3, 112, 112))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_test_transform_is_deterministic_and_train_is_not(name):
    image = _image(IMAGE_MODES[name], 150, 300, seed=1)
    test = build_transform(name, train=False)
    assert torch.equal(test(image), test(image))
    train = build_transform(name, train=True)
    torch.manual_seed(0)
    outputs = [train(image) for _ in range(8)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


def test_every_transform_has_an_image_mode():
    assert set(TRANSFORMS) == set(IMAGE_MODES)


def test_unknown_transform_names_the_choices():
    with pytest.raises(ValueError, match="allowed: .*retrieval"):
        build_transform("imagenet", train=True)
