"""Generalized lifted structure loss against a per-anchor loop and against PML.

Ours is PML's ``GeneralizedLiftedStructureLoss`` (default ``LpDistance``: normalised
embeddings, Euclidean; ``pos_margin=0``, ``neg_margin=margin``). Reduction: PML's
``MeanReducer`` averages over all N anchors and, because PML's masked log-sum-exp of an
empty set is 0, an anchor without positives still contributes [LSE_n(margin − D)]_+; ours
leaves such anchors out. So on P×K batches the two are equal, and in general
``PML · N == ours · n_valid + Σ_{anchors without positives} [LSE_n(margin − D)]_+``.
(PML's ``LiftedStructureLoss`` is the original pair-based loss of Oh Song et al. and a
different function; see ``circle_repro.losses.lifted_structure``.)
"""

from __future__ import annotations

import math

import pytest
import torch
from pair_reference import anchor_sets, assert_matches_reference, pk_batch
from pytorch_metric_learning import losses as pml_losses

from circle_repro.losses import LOSSES, LiftedStructureLoss


def distances(x: torch.Tensor, y: torch.Tensor) -> list[list[float]]:
    """Euclidean distances between the L2-normalised rows, as Python floats (float64)."""
    xn = x.detach().double() / x.detach().double().norm(dim=1, keepdim=True)
    yn = y.detach().double() / y.detach().double().norm(dim=1, keepdim=True)
    return [[math.dist(a, b) for b in yn.tolist()] for a in xn.tolist()]


def lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def brute_lifted_per_anchor(x, labels, margin, ref=None, ref_labels=None):
    """[log Σ_p e^{D_ap} + log Σ_n e^{margin − D_an}]_+ per anchor; None if K or L is 0."""
    exclude_self = ref is None
    if ref is None:
        ref, ref_labels = x, labels
    out = []
    for d_p, d_n in anchor_sets(distances(x, ref), labels, ref_labels, exclude_self):
        if d_p and d_n:
            out.append(max(0.0, lse(d_p) + lse([margin - d for d in d_n])))
        else:
            out.append(None)
    return out


def brute_lifted(*args, **kwargs) -> float:
    losses = [v for v in brute_lifted_per_anchor(*args, **kwargs) if v is not None]
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.5, 1.0, 2.0])
def test_matches_brute_force(margin, seed):
    x, labels = pk_batch(4, 3, 6, seed)
    loss_fn = LiftedStructureLoss(margin=margin)
    assert loss_fn(x, labels).item() == pytest.approx(brute_lifted(x, labels, margin), rel=1e-10)
    loss32 = loss_fn(x.float(), labels)
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(brute_lifted(x.float(), labels, margin), rel=1e-5)


def test_hinge_is_active_per_anchor():
    # A very negative margin drives some anchors below 0: those contribute exactly 0.
    x, labels = pk_batch(4, 3, 6, seed=1)
    margin = -3.0
    per_anchor = brute_lifted_per_anchor(x, labels, margin)
    assert 0 < per_anchor.count(0.0) < len(per_anchor)
    got = LiftedStructureLoss(margin=margin)(x, labels).item()
    assert got == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-10)


def test_reference_set_matches_brute_force():
    x, labels = pk_batch(3, 2, 5, seed=4)
    ref, ref_labels = pk_batch(3, 3, 5, seed=5)
    got = LiftedStructureLoss(margin=1.0)(x, labels, ref, ref_labels)
    expected = brute_lifted(x, labels, 1.0, ref=ref, ref_labels=ref_labels)
    assert got.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_matches_pml_generalized_lifted_on_pk_batch(margin, seed):
    x, labels = pk_batch(8, 4, 16, seed, dtype=torch.float32)
    ours_x, pml_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = LiftedStructureLoss(margin=margin)(ours_x, labels)
    pml = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=margin, pos_margin=0)(pml_x, labels)
    assert ours.item() > 0
    assert_matches_reference(ours, ours_x, pml, pml_x)


def test_reduction_relation_to_pml_with_anchors_lacking_positives():
    x, _ = pk_batch(1, 10, 16, seed=7, dtype=torch.float32)
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 2, 4, 0, 5])  # classes 3, 4, 5 are singletons
    n, n_valid = 10, 7
    ours = LiftedStructureLoss(margin=1.0)(x, labels).item()
    pml = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1.0, pos_margin=0)(x, labels)
    # PML's extra term: [LSE_n(margin − D)]_+ of each anchor without positives.
    dists = distances(x, x)
    extra = sum(
        max(0.0, lse([1.0 - d for j, d in enumerate(dists[a]) if labels[j] != labels[a]]))
        for a in range(n)
        if (labels == labels[a]).sum() == 1
    )
    assert extra > 0
    assert pml.item() * n == pytest.approx(ours * n_valid + extra, rel=1e-5)
    assert ours == pytest.approx(brute_lifted(x, labels, 1.0), rel=1e-5)


def test_gradcheck():
    x, labels = pk_batch(3, 3, 4, seed=5)
    loss_fn = LiftedStructureLoss(margin=1.0)
    per_anchor = brute_lifted_per_anchor(x, labels, 1.0)
    assert all(v > 1e-3 for v in per_anchor)  # away from the hinge
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x.requires_grad_(True),))


def test_registered_and_validated():
    assert LOSSES["lifted_structure"] is LiftedStructureLoss
    with pytest.raises(ValueError, match="margin"):
        LiftedStructureLoss(margin=float("inf"))
    with pytest.raises(ValueError, match="all_gather"):
        LiftedStructureLoss(all_gather=None)  # type: ignore[arg-type]
