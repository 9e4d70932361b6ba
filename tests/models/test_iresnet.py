"""IResNet-34 / -100 (arcface_torch layout): parameter counts, block structure, output size."""

from __future__ import annotations

import pytest
import torch

from circle_repro.models.iresnet import IBasicBlock, iresnet34, iresnet100


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("factory", "stages", "published_millions"),
    # Published: OpenVINO Open Model Zoo cards of the insightface MXNet models,
    # face-recognition-resnet34-arcface (LResNet34E-IR) "MParams 34.129" and
    # face-recognition-resnet100-arcface-onnx (LResNet100E-IR) "MParams 65.1320".
    # Ours, counted with the FC and the BN1d features: 34,139,328 and 65,156,160.
    [(iresnet34, [3, 4, 6, 3], 34.129), (iresnet100, [3, 13, 30, 3], 65.132)],
)
def test_full_size_parameter_count_and_stages(factory, stages: list[int], published_millions: float) -> None:
    with torch.device("meta"):
        model = factory()
        assert model(torch.empty(2, 3, 112, 112)).shape == (2, 512)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == stages
    assert _parameters(model) / 1e6 == pytest.approx(published_millions, rel=1e-3)
    assert model.fc.in_features == 512 * 7 * 7


def test_block_order_is_bn_conv_bn_prelu_conv_bn() -> None:
    block = iresnet34(width=1 / 16, input_size=32).layer1[0]
    assert isinstance(block, IBasicBlock)
    order = ["bn1", "conv1", "bn2", "prelu", "conv2", "bn3", "downsample"]
    assert [name for name, _ in block.named_children()] == order
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)


def test_tiny_model_output_and_fixed_feature_scale() -> None:
    model = iresnet100(embedding_dim=16, width=1 / 16, input_size=32)
    embeddings = model(torch.randn(3, 3, 32, 32))
    assert embeddings.shape == (3, 16)
    embeddings.sum().backward()
    assert not model.features.weight.requires_grad
    assert torch.all(model.features.weight == 1)


def test_input_size_is_checked() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        iresnet34(input_size=100)
    model = iresnet34(width=1 / 16, input_size=32)
    with pytest.raises(ValueError, match="set input_size"):
        model(torch.randn(2, 3, 48, 48))
