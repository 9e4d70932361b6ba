"""Shared pieces of the pair-loss reference tests: P×K batches, float64 cosines, per-anchor pair sets."""

from __future__ import annotations

import pytest
import torch


def pk_batch(p: int, k: int, dim: int, seed: int, dtype=torch.float64):
    """P classes × K samples, shuffled, random Gaussian embeddings."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    perm = torch.randperm(p * k, generator=gen)
    return torch.randn(p * k, dim, generator=gen, dtype=torch.float64).to(dtype), labels[perm]


def cosines(x: torch.Tensor, y: torch.Tensor) -> list[list[float]]:
    """Cosine similarity matrix as Python floats, in float64."""
    xn = x.detach().double() / x.detach().double().norm(dim=1, keepdim=True)
    yn = y.detach().double() / y.detach().double().norm(dim=1, keepdim=True)
    return (xn @ yn.T).tolist()


def anchor_sets(matrix: list[list[float]], labels: torch.Tensor, ref_labels: torch.Tensor, exclude_self: bool):
    """Per anchor row of ``matrix`` (similarities or distances to the references): the values of
    its positives (same label, self excluded when asked) and of its negatives."""
    q_labels, r_labels = labels.tolist(), ref_labels.tolist()
    for a, row in enumerate(matrix):
        positives = [v for j, v in enumerate(row) if r_labels[j] == q_labels[a] and not (exclude_self and j == a)]
        negatives = [v for j, v in enumerate(row) if r_labels[j] != q_labels[a]]
        yield positives, negatives


def assert_matches_reference(ours: torch.Tensor, ours_x: torch.Tensor, ref: torch.Tensor, ref_x: torch.Tensor) -> None:
    """Our loss equals a reference implementation's to rel 1e-5, and so do the input gradients
    (absolute slack 1e-5 of the largest reference gradient); both losses are back-propagated here."""
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours.backward()
    ref.backward()
    atol = 1e-5 * ref_x.grad.abs().max().item()
    torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-5, atol=atol)
