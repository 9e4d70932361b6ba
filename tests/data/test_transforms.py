"""Task transforms: output shapes, value ranges per backbone, and train-only augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from circle_repro.data.transforms import BACKBONE_NORMALISATION, IMAGE_MODES, TRANSFORMS, build_transform
from circle_repro.models import BACKBONES


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
    with pytest.raises(ValueError, match=r"allowed: .*retrieval"):
        build_transform("imagenet", train=True)


def _uniform(rgb: tuple[int, int, int], size: tuple[int, int] = (300, 260)) -> Image.Image:
    return Image.new("RGB", size, rgb)


@pytest.mark.parametrize("train", [False, True])
def test_bn_inception_gets_bgr_on_the_255_scale_minus_the_caffe_mean(train):
    out = build_transform("retrieval", train=train, backbone="bn_inception")(_uniform((200, 100, 50)))
    expected = torch.tensor([50 - 104, 100 - 117, 200 - 128], dtype=torch.float32)  # B, G, R; std 1
    assert torch.equal(out, expected[:, None, None].expand_as(out))


@pytest.mark.parametrize("backbone", [None, "resnet50", "mgn"])
def test_reid_backbones_keep_imagenet_rgb_normalisation(backbone):
    out = build_transform("reid", train=False, backbone=backbone)(_uniform((200, 100, 50)))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (torch.tensor([200, 100, 50]) / 255 - mean) / std
    assert torch.allclose(out, expected[:, None, None].expand_as(out), atol=1e-6)


@pytest.mark.parametrize("backbone", [None, "iresnet34", "iresnet100"])
def test_face_backbones_keep_the_minus_one_one_scale(backbone):
    out = build_transform("face", train=False, backbone=backbone)(_uniform((200, 100, 50), (112, 112)))
    expected = torch.tensor([200, 100, 50]) / 255 * 2 - 1
    assert torch.allclose(out, expected[:, None, None].expand_as(out), atol=1e-6)


def test_a_backbone_trained_from_scratch_takes_the_style_normalisation():
    image = _image("L", 28, 28)
    assert torch.equal(
        build_transform("mnist", False, backbone="small_cnn")(image), build_transform("mnist", False)(image)
    )


def test_every_backbone_declares_its_input_normalisation():
    assert set(BACKBONE_NORMALISATION) == set(BACKBONES)


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match=r"allowed: .*bn_inception"):
        build_transform("retrieval", train=False, backbone="vgg16")


def test_retrieval_train_crop_is_research_ms_loss_random_resized_crop():
    steps = build_transform("retrieval", train=True).transforms
    crop = next(step for step in steps if isinstance(step, v2.RandomResizedCrop))
    assert tuple(crop.size) == (227, 227) and tuple(crop.scale) == (0.16, 1.0)
    assert isinstance(steps[0], v2.Resize) and list(steps[0].size) == [256]


@pytest.mark.parametrize("train", [True, False])
def test_reid_image_size_sets_the_output_size(train):
    out = build_transform("reid", train=train, backbone="mgn", image_size=[384, 128])(_image("RGB", 64, 160))
    assert tuple(out.shape) == (3, 384, 128)


@pytest.mark.parametrize(("name", "image_size"), [("retrieval", [384, 128]), ("reid", [384]), ("reid", [0, 128])])
def test_image_size_is_refused_where_it_has_no_meaning(name, image_size):
    with pytest.raises(ValueError, match="image_size"):
        build_transform(name, train=False, image_size=image_size)
