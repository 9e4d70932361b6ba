"""Multi-Similarity loss and miner against a per-anchor loop and against PML.

Reduction: ours is the mean over anchors with ≥1 positive and ≥1 negative (before mining);
PML's default ``MeanReducer`` averages the same per-anchor losses over all N anchors (the
others contribute 0). So ``ours · n_valid == PML · N`` exactly, and the two are equal when
every anchor is valid (P×K batches with K ≥ 2).
"""

from __future__ import annotations

import math

import pytest
import torch
from pair_reference import anchor_sets, assert_matches_reference, cosines, pk_batch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from circle_repro.losses import LOSSES, MultiSimilarityLoss, MultiSimilarityMiner


def brute_ms_per_anchor(x, labels, alpha, beta, base, epsilon=None, ref=None, ref_labels=None):
    """MS loss of each anchor, one pair at a time; None for anchors lacking K or L.

    ``epsilon`` None means no mining; otherwise the MS miner with thresholds taken over the
    unmined positive/negative sets of the anchor.
    """
    exclude_self = ref is None
    if ref is None:
        ref, ref_labels = x, labels
    out = []
    for s_p, s_n in anchor_sets(cosines(x, ref), labels, ref_labels, exclude_self):
        if not s_p or not s_n:
            out.append(None)
            continue
        if epsilon is not None:
            easiest_pos, hardest_neg = min(s_p), max(s_n)
            s_p, s_n = (
                [s for s in s_p if s - epsilon < hardest_neg],
                [s for s in s_n if s + epsilon > easiest_pos],
            )
        pos_term = math.log(1 + sum(math.exp(-alpha * (s - base)) for s in s_p)) / alpha
        neg_term = math.log(1 + sum(math.exp(beta * (s - base)) for s in s_n)) / beta
        out.append(pos_term + neg_term)
    return out


def brute_ms(*args, **kwargs) -> float:
    """Mean of :func:`brute_ms_per_anchor` over the anchors having K ≥ 1 and L ≥ 1."""
    losses = [v for v in brute_ms_per_anchor(*args, **kwargs) if v is not None]
    return sum(losses) / len(losses) if losses else 0.0


# --- per-anchor loop ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("miner", [True, False], ids=["mined", "all_pairs"])
@pytest.mark.parametrize(("alpha", "beta", "base"), [(2.0, 50.0, 0.5), (1.0, 10.0, 0.0)])
def test_matches_brute_force(alpha, beta, base, miner, seed):
    x, labels = pk_batch(4, 3, 6, seed)
    epsilon = 0.1 if miner else None
    loss_fn = MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, miner=miner)
    expected = brute_ms(x, labels, alpha, beta, base, epsilon)
    assert loss_fn(x, labels).item() == pytest.approx(expected, rel=1e-10)
    expected32 = brute_ms(x.float(), labels, alpha, beta, base, epsilon)
    loss32 = loss_fn(x.float(), labels)
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(expected32, rel=1e-5)


def test_mining_changes_the_loss_as_the_loop_says():
    # The miner drops pairs in this batch, so mined and unmined losses differ.
    x, labels = pk_batch(4, 3, 6, seed=0)
    mined = MultiSimilarityLoss()(x, labels).item()
    unmined = MultiSimilarityLoss(miner=False)(x, labels).item()
    assert mined != pytest.approx(unmined, rel=1e-3)
    assert mined == pytest.approx(brute_ms(x, labels, 2.0, 50.0, 0.5, 0.1), rel=1e-10)
    assert unmined == pytest.approx(brute_ms(x, labels, 2.0, 50.0, 0.5, None), rel=1e-10)


def test_reference_set_matches_brute_force():
    x, labels = pk_batch(3, 2, 5, seed=4)
    ref, ref_labels = pk_batch(3, 3, 5, seed=5)
    got = MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.3)(x, labels, ref, ref_labels)
    expected = brute_ms(x, labels, 2.0, 10.0, 0.3, 0.1, ref=ref, ref_labels=ref_labels)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_anchors_without_positives_are_left_out_of_the_mean():
    x, _ = pk_batch(1, 8, 5, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 2, 4])  # classes 3 and 4 are singletons
    per_anchor = brute_ms_per_anchor(x, labels, 2.0, 10.0, 0.5, 0.1)
    assert per_anchor.count(None) == 2
    got = MultiSimilarityLoss(beta=10.0)(x, labels).item()
    assert got == pytest.approx(sum(v for v in per_anchor if v is not None) / 6, rel=1e-10)


def pair_set(mask: torch.Tensor) -> set[tuple[int, int]]:
    """The (row, column) pairs where ``mask`` is True."""
    return {(int(i), int(j)) for i, j in mask.nonzero().tolist()}


# --- miner --------------------------------------------------------------------------------------


def test_miner_hand_example():
    # One anchor: positives at 0.9, 0.5, 0.35; negatives at 0.45, 0.3, −0.2; ε = 0.1.
    # Hardest negative 0.45 keeps positives with s − 0.1 < 0.45: 0.5 and 0.35.
    # Easiest positive 0.35 keeps negatives with s + 0.1 > 0.35: 0.45 and 0.3.
    sim = torch.tensor([[0.9, 0.5, 0.35, 0.45, 0.3, -0.2]])
    pos = torch.tensor([[True, True, True, False, False, False]])
    hard_pos, hard_neg = MultiSimilarityMiner(epsilon=0.1).mine(sim, pos, ~pos)
    assert hard_pos.tolist() == [[False, True, True, False, False, False]]
    assert hard_neg.tolist() == [[False, False, False, True, True, False]]


@pytest.mark.parametrize("seed", [0, 1])
def test_miner_matches_pml_miner(seed):
    x, labels = pk_batch(8, 4, 16, seed, dtype=torch.float32)
    hard_pos, hard_neg = MultiSimilarityMiner(epsilon=0.1)(x, labels)
    a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=0.1)(x, labels)
    assert pair_set(hard_pos) == set(zip(a1.tolist(), p.tolist(), strict=True))
    assert pair_set(hard_neg) == set(zip(a2.tolist(), n.tolist(), strict=True))
    # The miner does drop pairs here (otherwise this test would not test it).
    same = labels[:, None] == labels[None, :]
    assert 0 < hard_neg.sum() < (~same).sum()


def test_miner_masks_are_subsets_and_carry_no_gradient():
    x, labels = pk_batch(4, 3, 6, seed=9)
    x.requires_grad_(True)
    hard_pos, hard_neg = MultiSimilarityMiner()(x, labels)
    same = labels[:, None] == labels[None, :]
    assert not (hard_pos & ~same).any() and not (hard_neg & same).any()
    assert not hard_pos.diagonal().any()
    assert hard_pos.dtype == torch.bool and not hard_pos.requires_grad


# --- pytorch-metric-learning ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("miner", [True, False], ids=["mined", "all_pairs"])
def test_matches_pml_on_pk_batch(miner, seed):
    # Every anchor of a P×K batch is valid, so both reductions are the mean over N.
    x, labels = pk_batch(8, 4, 16, seed, dtype=torch.float32)
    ours_x, pml_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = MultiSimilarityLoss(miner=miner)(ours_x, labels)
    pml_fn = pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)
    pairs = pml_miners.MultiSimilarityMiner(epsilon=0.1)(pml_x, labels) if miner else None
    pml = pml_fn(pml_x, labels, pairs)
    assert ours.item() > 0
    assert_matches_reference(ours, ours_x, pml, pml_x)


def test_reduction_relation_to_pml_with_invalid_anchors():
    # 4 of the 12 anchors are singletons: PML averages over N = 12, we over n_valid = 8.
    x, _ = pk_batch(1, 12, 16, seed=7, dtype=torch.float32)
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 2, 4, 5, 0, 6, 1])
    n, n_valid = 12, 8
    ours_x, pml_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = MultiSimilarityLoss(beta=10.0)(ours_x, labels)
    pml = pml_losses.MultiSimilarityLoss(alpha=2, beta=10, base=0.5)(
        pml_x, labels, pml_miners.MultiSimilarityMiner(epsilon=0.1)(pml_x, labels)
    )
    assert ours.item() * n_valid == pytest.approx(pml.item() * n, rel=1e-5)
    assert ours.item() != pytest.approx(pml.item(), rel=1e-2)
    ours.backward()
    pml.backward()
    scaled = ours_x.grad * (n_valid / n)
    torch.testing.assert_close(scaled, pml_x.grad, rtol=1e-5, atol=1e-5 * pml_x.grad.abs().max())


# --- gradients and arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("miner", [True, False], ids=["mined", "all_pairs"])
def test_gradcheck(miner):
    x, labels = pk_batch(3, 3, 4, seed=5)
    # Keep every similarity away from the mining thresholds so the masks are locally fixed.
    xn = x / x.norm(dim=1, keepdim=True)
    sims = xn @ xn.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(9, dtype=torch.bool)
    easiest_pos = sims.masked_fill(~same | eye, 2).amin(1, keepdim=True)
    hardest_neg = sims.masked_fill(same, -2).amax(1, keepdim=True)
    assert ((sims - 0.1 - hardest_neg).abs()[same & ~eye] > 1e-3).all()
    assert ((sims + 0.1 - easiest_pos).abs()[~same] > 1e-3).all()
    loss_fn = MultiSimilarityLoss(beta=10.0, miner=miner)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x.requires_grad_(True),))


def test_registered_and_validated():
    assert LOSSES["multi_similarity"] is MultiSimilarityLoss
    for kwargs, name in [
        ({"alpha": 0}, "alpha"),
        ({"beta": -1.0}, "beta"),
        ({"base": float("nan")}, "base"),
        ({"miner": 1}, "miner"),
        ({"all_gather": "yes"}, "all_gather"),
    ]:
        with pytest.raises(ValueError, match=name):
            MultiSimilarityLoss(**kwargs)
    with pytest.raises(ValueError, match="epsilon"):
        MultiSimilarityMiner(epsilon=float("inf"))
