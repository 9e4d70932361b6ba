"""Cosine similarities of two sets (the class-level heads' and the reference-set path's),
against ``F.normalize`` then a matmul under plain autograd, and by float64 gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from circle_repro.losses.pair_utils import cosine_similarity_matrix


def plain_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1) @ F.normalize(y, dim=1).T


def two_sets(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(5, 4, generator=gen, dtype=torch.float64),
        torch.randn(7, 4, generator=gen, dtype=torch.float64),
    )


def test_gradcheck_wrt_both_sets():
    x, y = two_sets(0)
    inputs = (x.requires_grad_(True), y.requires_grad_(True))
    assert torch.autograd.gradcheck(cosine_similarity_matrix, inputs)


@pytest.mark.parametrize("tiny", [0.0, 1e-14, 1e-3])
def test_equals_normalize_then_matmul_with_a_zero_or_tiny_row(tiny):
    """At a row with norm ≤ ε = 1e-12, F.normalize divides by ε and passes no gradient to
    the norm; the fused backward does the same."""
    x, y = two_sets(1)
    x[2] *= tiny
    y[4] *= tiny
    upstream = torch.randn(5, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for fn in (cosine_similarity_matrix, plain_cosine):
        xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        sim = fn(xs, ys)
        sim.backward(upstream)
        grads.append((sim.detach(), xs.grad, ys.grad))
    for ours, reference in zip(*grads, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    if tiny < 1e-12:
        assert grads[0][1][2].abs().max() > 1e6  # g / ε, not 0


def test_only_the_inputs_that_need_a_gradient_get_one():
    x, y = two_sets(3)
    y.requires_grad_(True)
    cosine_similarity_matrix(x, y).sum().backward()
    assert x.grad is None and y.grad is not None
    reference = y.detach().clone().requires_grad_(True)
    plain_cosine(x, reference).sum().backward()
    torch.testing.assert_close(y.grad, reference.grad, rtol=1e-12, atol=1e-12)
