"""CUDA paths of the losses: autocast at the paper's largest scale gives the fp32 result.

Skipped where no GPU is present (CI); the same properties are checked on the CPU in
test_circle.py, test_margin_softmax.py and test_pair_hard_inputs.py.
"""

import pytest
import torch

from circle_repro.losses import (
    AMSoftmaxClassifier,
    ArcFaceClassifier,
    CircleClassifier,
    CircleLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _batch(n=256, d=512, classes=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen).cuda().requires_grad_(True)
    labels = torch.arange(classes).repeat_interleave(n // classes)[torch.randperm(n, generator=gen)].cuda()
    return x, labels


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "make", [lambda: CircleLoss(m=0.25, gamma=256), lambda: TripletMarginLoss(), lambda: MultiSimilarityLoss()]
)
def test_pair_losses_under_autocast_match_fp32(dtype, make):
    x, labels = _batch()
    loss_fn = make()
    reference = loss_fn(x, labels)
    (grad_ref,) = torch.autograd.grad(reference, x)
    with torch.autocast("cuda", dtype=dtype):
        loss = loss_fn(x, labels)
    (grad,) = torch.autograd.grad(loss, x)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, reference, rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(grad, grad_ref, rtol=5e-2, atol=5e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "make",
    [
        lambda: CircleClassifier(512, 85742, m=0.25, gamma=256),
        lambda: AMSoftmaxClassifier(512, 85742),
        lambda: ArcFaceClassifier(512, 85742),
    ],
)
def test_class_heads_at_ms1m_size_under_autocast_match_fp32(dtype, make):
    x, _ = _batch(n=128)
    labels = torch.randint(0, 85742, (128,), device="cuda")
    head = make().cuda()
    reference = head(x, labels)
    with torch.autocast("cuda", dtype=dtype):
        loss = head(x, labels)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, reference, rtol=1e-2, atol=1e-2)
