"""Batch-hard cosine triplet loss against a per-anchor loop and against PML."""

from __future__ import annotations

import pytest
import torch
from pair_reference import anchor_sets, cosines, pk_batch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners, reducers
from pytorch_metric_learning.distances import CosineSimilarity

from circle_repro.losses import TripletMarginLoss
from circle_repro.losses.pair_utils import EmptyBatchWarning


def brute_triplet(x, labels, margin, ref=None, ref_labels=None):
    """[max_j s_n − min_i s_p + margin]_+ per anchor, averaged over anchors with K, L ≥ 1."""
    exclude_self = ref is None
    if ref is None:
        ref, ref_labels = x, labels
    losses = []
    for s_p, s_n in anchor_sets(cosines(x, ref), labels, ref_labels, exclude_self):
        if s_p and s_n:
            losses.append(max(0.0, max(s_n) - min(s_p) + margin))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_matches_brute_force(margin, seed):
    x, labels = pk_batch(4, 3, 6, seed)
    assert TripletMarginLoss(margin)(x, labels).item() == pytest.approx(
        brute_triplet(x, labels, margin), rel=1e-12, abs=1e-15
    )
    assert TripletMarginLoss(margin)(x.float(), labels).item() == pytest.approx(
        brute_triplet(x.float(), labels, margin), rel=1e-5, abs=1e-7
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("margin", [0.1, 0.3])
def test_matches_pml_batch_hard(margin, seed):
    x, labels = pk_batch(8, 4, 16, seed, dtype=torch.float32)
    ours_x, pml_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    miner = miners.BatchHardMiner(distance=CosineSimilarity())
    pml_fn = pml_losses.TripletMarginLoss(margin=margin, distance=CosineSimilarity(), reducer=reducers.MeanReducer())
    pml = pml_fn(pml_x, labels, miner(pml_x, labels))
    ours = TripletMarginLoss(margin)(ours_x, labels)
    assert ours.item() > 0
    assert ours.item() == pytest.approx(pml.item(), rel=1e-5)
    ours.backward()
    pml.backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad, rtol=1e-5, atol=1e-7)


def test_gradcheck():
    x, labels = pk_batch(3, 3, 4, seed=5)
    margin = 0.3
    # Keep away from the hinge kink and from ties in the hardest pairs.
    xn = x / x.norm(dim=1, keepdim=True)
    sims = xn @ xn.T
    same = labels[:, None] == labels[None, :]
    hard_p = sims.masked_fill(~same | torch.eye(9, dtype=torch.bool), 2).amin(1)
    hard_n = sims.masked_fill(same, -2).amax(1)
    assert ((hard_n - hard_p + margin).abs() > 1e-3).all()
    loss_fn = TripletMarginLoss(margin)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x.requires_grad_(True),))


def test_anchors_without_positives_are_left_out_of_the_mean():
    x, _ = pk_batch(1, 8, 5, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 2, 4])
    loss = TripletMarginLoss(0.5)(x, labels)
    assert loss.item() == pytest.approx(brute_triplet(x, labels, 0.5), rel=1e-12)


@pytest.mark.parametrize("labels", [[3] * 6, list(range(6))], ids=["all_same", "all_distinct"])
def test_no_valid_anchor_gives_zero_with_graph(labels):
    x = torch.randn(6, 4, requires_grad=True)
    with pytest.warns(EmptyBatchWarning, match="no anchor in the batch"):
        loss = TripletMarginLoss()(x, torch.tensor(labels))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_reference_set_matches_brute_force():
    x, labels = pk_batch(3, 2, 5, seed=4)
    ref, ref_labels = pk_batch(3, 3, 5, seed=5)
    loss = TripletMarginLoss(0.2)(x, labels, ref, ref_labels)
    assert loss.item() == pytest.approx(brute_triplet(x, labels, 0.2, ref, ref_labels), rel=1e-12)


def test_invalid_margin():
    with pytest.raises(ValueError, match="margin"):
        TripletMarginLoss(margin=float("nan"))
