"""The class-level head base class: validation, weight, cosines, forward = CE(logits)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from circle_repro.losses import (
    AMSoftmaxClassifier,
    ArcFaceClassifier,
    CircleClassifier,
    NormFaceClassifier,
    ProxyClassifier,
    SoftmaxClassifier,
)

HEADS = [
    SoftmaxClassifier,
    NormFaceClassifier,
    AMSoftmaxClassifier,
    ArcFaceClassifier,
    CircleClassifier,
]


class ScaledCosine(ProxyClassifier):
    """Minimal concrete head for testing the base class: logits 3·cos, plus 1 at the target."""

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check_inputs(embeddings, labels)
        return 3 * self.cosine(embeddings) + F.one_hot(labels.long(), self.num_classes)


def test_base_class_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        ProxyClassifier(4, 3)  # type: ignore[abstract]


@pytest.mark.parametrize("cls", [ScaledCosine, *HEADS])
def test_every_head_is_a_proxy_classifier_with_one_weight_matrix(cls):
    head = cls(embedding_dim=7, num_classes=4)
    assert isinstance(head, ProxyClassifier)
    assert head.weight.shape == (4, 7) and head.weight.requires_grad
    assert (head.embedding_dim, head.num_classes) == (7, 4)
    expected_params = {"weight", "class_bias"} if cls is SoftmaxClassifier else {"weight"}
    assert set(dict(head.named_parameters())) == expected_params
    assert "embedding_dim=7, num_classes=4" in repr(head)


@pytest.mark.parametrize("cls", [ScaledCosine, *HEADS])
def test_weight_is_xavier_normal_initialised(cls):
    torch.manual_seed(123)
    head = cls(embedding_dim=40, num_classes=60)
    torch.manual_seed(123)
    expected = torch.nn.init.xavier_normal_(torch.empty(60, 40))
    torch.testing.assert_close(head.weight.detach(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [ScaledCosine, *HEADS])
@pytest.mark.parametrize(
    ("embedding_dim", "num_classes", "bad"),
    [
        (0, 3, "embedding_dim"),
        (4, 0, "num_classes"),
        (-2, 3, "embedding_dim"),
        (4.0, 3, "embedding_dim"),
        (4, True, "num_classes"),
        ("4", 3, "embedding_dim"),
    ],
)
def test_dimensions_must_be_positive_ints(cls, embedding_dim, num_classes, bad):
    with pytest.raises(ValueError, match=bad):
        cls(embedding_dim, num_classes)


def test_forward_is_cross_entropy_of_logits():
    torch.manual_seed(0)
    head = ScaledCosine(5, 4).double()
    x = torch.randn(9, 5, dtype=torch.float64)
    labels = torch.randint(0, 4, (9,), dtype=torch.int32)
    expected = 0.0
    for row, y in zip(head.logits(x, labels).tolist(), labels.tolist(), strict=True):
        expected += math.log(sum(math.exp(z) for z in row)) - row[y]
    assert head(x, labels).item() == pytest.approx(expected / 9, rel=1e-10)


def test_cosine_matches_normalised_inner_products():
    torch.manual_seed(1)
    head = ScaledCosine(6, 3).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    w = head.weight.detach()
    for i in range(4):
        for j in range(3):
            expected = float(x[i] @ w[j]) / float(x[i].norm() * w[j].norm())
            assert head.cosine(x)[i, j].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cosine_is_float32_for_half_inputs_and_under_autocast(dtype):
    torch.manual_seed(2)
    head = ScaledCosine(16, 5)
    x = torch.randn(6, 16)
    reference = head.cosine(x.to(dtype).float())
    assert head.cosine(x.to(dtype)).dtype == torch.float32
    torch.testing.assert_close(head.cosine(x.to(dtype)), reference, rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = head.cosine(x)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, head.cosine(x), rtol=1e-6, atol=1e-6)


def test_input_shapes_are_checked():
    head = ScaledCosine(4, 3)
    with pytest.raises(ValueError, match="dimension 4"):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        head(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        head(torch.randn(2, 4, 1), torch.tensor([0, 1]))


def test_circle_classifier_keeps_its_constructor_and_state_dict():
    head = CircleClassifier(8, 3)
    assert (head.m, head.gamma) == (0.25, 256.0)
    assert list(head.state_dict()) == ["weight"]
    assert repr(head).endswith("(embedding_dim=8, num_classes=3, m=0.25, gamma=256.0)")
