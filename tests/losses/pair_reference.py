"""Shared pieces of the pair-loss reference tests: P×K batches and float64 cosines."""

from __future__ import annotations

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
