"""uint8 batches normalised on the device: the values of the one-image CPU pipeline (build_transform), for every
backbone's normalisation, random erasing included; hand-computed pixels; the training preprocessor."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.prepared import Sample, write_prepared
from circle_repro.data.transforms import (
    BACKBONE_NORMALISATION,
    CADENE_BN_INCEPTION,
    IMAGE_MODES,
    IMAGENET,
    INSIGHTFACE,
    build_pixel_transform,
    build_transform,
)
from circle_repro.engine.batch_transfer import ImageBatchPreprocessor, NetworkInput

RGB_STYLES = ("face", "reid", "retrieval")


def _image(style: str, seed: int) -> torch.Tensor:
    channels = 1 if IMAGE_MODES[style] == "L" else 3
    height, width = {"mnist": (28, 28), "face": (112, 112), "reid": (256, 128), "retrieval": (300, 260)}[style]
    return torch.randint(
        0, 256, (channels, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def _split_pipeline(style: str, train: bool, backbone: str | None, image: torch.Tensor) -> torch.Tensor:
    """The image through the pixel half (with its erasing rectangle), then NetworkInput on a batch of one."""
    pipeline = build_pixel_transform(style, train, backbone)
    pixels = pipeline.pixels(image)
    assert pixels.dtype == torch.uint8
    erase = pipeline.erase_box(pixels)[None] if pipeline.erasing is not None else None
    return NetworkInput.of(pipeline)(pixels[None], erase=erase)[0]


# every backbone's normalisation on the RGB styles; the grey-level style with the backbones without their own
STYLES_AND_BACKBONES = [(style, backbone) for style in RGB_STYLES for backbone in [None, *BACKBONE_NORMALISATION]] + [
    ("mnist", backbone) for backbone in [None, *BACKBONE_NORMALISATION] if BACKBONE_NORMALISATION.get(backbone) is None
]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("style", "backbone"), STYLES_AND_BACKBONES)
def test_split_pipeline_gives_the_one_image_pipelines_values(style, train, backbone):
    full = build_transform(style, train, backbone)
    for seed in range(6):  # six draws of the augmentation: the same RNG calls in the same order in both
        image = _image(style, seed)
        torch.manual_seed(seed)
        expected, next_draw = full(image), torch.rand(1)
        torch.manual_seed(seed)
        got = _split_pipeline(style, train, backbone, image)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)
        assert torch.equal(torch.rand(1), next_draw)


def test_reid_training_erases_some_images_and_not_others_as_the_one_image_pipeline_does():
    pipeline = build_pixel_transform("reid", train=True, backbone="resnet50")
    boxes = []
    for seed in range(20):
        torch.manual_seed(seed)
        boxes.append(pipeline.erase_box(pipeline.pixels(_image("reid", seed))))
    heights = torch.stack(boxes)[:, 2]
    assert (heights > 0).any() and (heights == 0).any()  # p = 0.5: both happen in 20 draws


@pytest.mark.parametrize(
    ("normalisation", "pixel", "expected"),
    [
        # BN-Inception: BGR on [0, 255] minus (104, 117, 128), std 1: (50, 100, 200) - (104, 117, 128)
        (CADENE_BN_INCEPTION, (200, 100, 50), (-54.0, -17.0, 72.0)),
        # ImageNet: (x / 255 - mean) / std
        (IMAGENET, (255, 0, 51), ((1 - 0.485) / 0.229, -0.456 / 0.224, (0.2 - 0.406) / 0.225)),
        # insightface: [-1, 1]
        (INSIGHTFACE, (255, 0, 51), (1.0, -1.0, -0.6)),
    ],
)
def test_hand_computed_pixels_of_each_normalisation(normalisation, pixel, expected):
    batch = torch.tensor(pixel, dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2).contiguous()
    out = NetworkInput(normalisation)(batch)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 2, 2)
    torch.testing.assert_close(out, torch.tensor(expected).view(1, 3, 1, 1).expand(2, 3, 2, 2), rtol=1e-6, atol=1e-6)


def test_erasing_sets_exactly_each_images_rectangle_after_normalising():
    batch = torch.full((2, 3, 4, 5), 255, dtype=torch.uint8)
    boxes = torch.tensor([[1, 2, 2, 1], [0, 0, 0, 0]])  # image 0: rows 1-2, column 2; image 1: nothing
    out = NetworkInput(INSIGHTFACE, erase_value=(0.5,))(batch, erase=boxes)
    expected = torch.ones(2, 3, 4, 5)
    expected[0, :, 1:3, 2:3] = 0.5
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_a_float_batch_is_refused_rather_than_normalised_twice():
    with pytest.raises(TypeError, match="uint8"):
        NetworkInput(IMAGENET)(torch.zeros(1, 3, 2, 2))


def _prepared_reid(root):
    rng = np.random.default_rng(0)
    raw = root / "raw"
    raw.mkdir(parents=True)
    samples = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (80, 40, 3), dtype=np.uint8)).save(raw / f"{i}.png")
        samples.append(Sample(raw / f"{i}.png", f"{i % 2}/{i}.png", i % 2, "train", f"image {i}"))
    write_prepared(samples, root / "prepared")
    return root / "prepared"


def test_training_batches_are_uint8_and_the_preprocessor_gives_the_one_image_pipelines_values(tmp_path):
    """A reid training batch (flip, pad, crop, erasing) as the loader collates it, through the model's
    preprocessor, equals build_transform on each image drawn in the same order from the same seed."""
    prepared = _prepared_reid(tmp_path)
    dataset = ManifestDataset(prepared, "train", "reid", train=True, backbone="mgn")
    torch.manual_seed(3)
    batch = default_collate([dataset[index] for index in range(len(dataset))])
    assert batch["inputs"].dtype == torch.uint8 and batch["erase"].shape == (8, 4)
    out = ImageBatchPreprocessor("reid", backbone="mgn")(batch, training=True)
    assert set(out) == {"inputs", "labels"}  # the rectangles are used up

    full = build_transform("reid", train=True, backbone="mgn")
    torch.manual_seed(3)
    expected = []
    for path in dataset.frame["path"]:
        with Image.open(prepared / path) as image:
            expected.append(full(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()))
    torch.testing.assert_close(out["inputs"], torch.stack(expected), rtol=1e-6, atol=1e-5)
    assert (batch["erase"][:, 2] > 0).any()
