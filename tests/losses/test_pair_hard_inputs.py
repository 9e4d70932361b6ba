"""Hard inputs for every pair-wise loss, and the hard-margin limit of the Circle loss.

Low precision (bf16 autocast, fp16/bf16 inputs) at γ=256, identical embeddings, batches
without any valid anchor (one class, singletons, no positive in the reference set), m < 0:
no NaN or inf anywhere, and where no anchor is valid the loss is 0, attached to the graph,
with exactly one ``EmptyBatchWarning`` per loss instance however often it is called.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from circle_repro.losses import (
    CircleLoss,
    EmptyBatchWarning,
    LiftedStructureLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
)

PAIR_LOSSES = {
    "circle_face": lambda: CircleLoss(m=0.25, gamma=256),
    "circle_retrieval": lambda: CircleLoss(m=0.4, gamma=80),
    "circle_negative_m": lambda: CircleLoss(m=-0.2, gamma=256),
    "triplet": lambda: TripletMarginLoss(margin=0.1),
    "multi_similarity": lambda: MultiSimilarityLoss(),
    "multi_similarity_all_pairs": lambda: MultiSimilarityLoss(miner=False),
    "lifted_structure": lambda: LiftedStructureLoss(),
}

every_loss = pytest.mark.parametrize("name", sorted(PAIR_LOSSES))


def pk_batch(p: int, k: int, dim: int, seed: int, dtype=torch.float32):
    """P classes × K samples, shuffled, random Gaussian embeddings."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    perm = torch.randperm(p * k, generator=gen)
    return torch.randn(p * k, dim, generator=gen, dtype=torch.float64).to(dtype), labels[perm]


def empty_batch_warnings(record: list[warnings.WarningMessage]) -> int:
    return sum(issubclass(w.category, EmptyBatchWarning) for w in record)


# --- low precision -------------------------------------------------------------------------------


@every_loss
def test_bf16_autocast_keeps_float32(name):
    x, labels = pk_batch(8, 4, 32, seed=1)
    x.requires_grad_(True)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = PAIR_LOSSES[name]()(x, labels)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    reference = PAIR_LOSSES[name]()(x.detach(), labels)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@every_loss
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(name, dtype):
    x, labels = pk_batch(8, 4, 32, seed=2)
    low = x.to(dtype).requires_grad_(True)
    loss = PAIR_LOSSES[name]()(low, labels)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    reference = PAIR_LOSSES[name]()(low.detach().float(), labels)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    loss.backward()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad).all()


def test_circle_gamma_256_fp16_extremes():
    # s_p = −1 and s_n = 1: ℓ_p = 256·2.25·1.75 = 1008, ℓ_n = 256·1.25·0.75 = 240.
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=torch.float16)
    labels = torch.tensor([0, 0, 1, 1])
    x.requires_grad_(True)
    loss = CircleLoss(m=0.25, gamma=256)(x, labels)
    # Anchor 0: positive x1 (s=−1), negatives x2 (s=1, ℓ=240) and x3 (s=−1, ℓ_n=0 clipped).
    expected = 1008 + math.log(math.exp(240) + 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all()


# --- degenerate batches --------------------------------------------------------------------------


@every_loss
@pytest.mark.parametrize("kind", ["ones", "one_hot"])
def test_identical_embeddings_are_finite(name, kind):
    # One-hot rows give cosines of exactly 1 (distance exactly 0); all-ones rows 1 ± ulp.
    x = torch.ones(12, 8) if kind == "ones" else torch.eye(8)[[0] * 12]
    x.requires_grad_(True)
    labels = torch.arange(4).repeat_interleave(3)
    loss = PAIR_LOSSES[name]()(x, labels)
    assert math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(x.grad).all()


@every_loss
@pytest.mark.parametrize("tiny", [0.0, 1e-14])
def test_tiny_embedding_row_matches_plain_autograd(name, tiny):
    # The batch-against-itself path uses a fused normalise + Gram with a hand-written
    # backward; the reference-set path the two-set cosine (itself checked against
    # F.normalize and autograd in test_pair_utils.py). With the batch given
    # again as its own reference (self pairs excluded) both compute the same function, also
    # at a zero or tiny row, where F.normalize divides by ε = 1e-12 instead of the norm.
    x, labels = pk_batch(4, 3, 6, seed=8, dtype=torch.float64)
    x[5] *= tiny
    fused_x, plain_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fused = PAIR_LOSSES[name]()(fused_x, labels)
    plain = PAIR_LOSSES[name]()(plain_x, labels, plain_x * 1, labels, ref_includes_query=True)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    fused.backward()
    plain.backward()
    assert torch.isfinite(fused_x.grad).all() and fused_x.grad[5].abs().max() > 1e6
    torch.testing.assert_close(fused_x.grad, plain_x.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.4, 80.0), (-0.2, 256.0)])
def test_circle_identical_embeddings_value(m, gamma):
    # Every s = 1: each of the K−1 = 2 positives has ℓ_p = γ·m·(−m) when m > 0 (α_p = m) and
    # 0 when m < 0 (α_p clipped); each of the L = 9 negatives has ℓ_n = γ(1+m)(1−m).
    x = torch.ones(12, 8, dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(3)
    l_p = -gamma * m * m if m > 0 else 0.0
    l_n = gamma * (1 + m) * (1 - m)
    expected = math.log1p(math.exp(l_p + math.log(2) + l_n + math.log(9)))
    assert CircleLoss(m=m, gamma=gamma)(x, labels).item() == pytest.approx(expected, rel=1e-10)


NO_VALID_ANCHOR = {
    "one_class": (torch.zeros(6, dtype=torch.long), None),
    "singletons": (torch.arange(6), None),
    # Queries of classes 0/1 against references of classes 2/3 only: no positive pair.
    "no_positive_in_refs": (torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([2, 2, 3, 3])),
}


@every_loss
@pytest.mark.parametrize("case", sorted(NO_VALID_ANCHOR))
def test_no_valid_anchor_is_zero_with_graph_and_warns_once(name, case):
    labels, ref_labels = NO_VALID_ANCHOR[case]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen).requires_grad_(True)
    refs = () if ref_labels is None else (torch.randn(4, 5, generator=gen), ref_labels)
    loss_fn = PAIR_LOSSES[name]()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        losses = [loss_fn(x, labels, *refs) for _ in range(3)]
    assert empty_batch_warnings(record) == 1
    for loss in losses:
        assert loss.item() == 0.0 and loss.requires_grad
    sum(losses).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_warning_is_per_instance_and_only_for_empty_batches():
    x, labels = pk_batch(4, 3, 6, seed=0)
    first, second = CircleLoss(), CircleLoss()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first(x, labels)  # a valid batch: no warning
        assert empty_batch_warnings(record) == 0
        for _ in range(2):
            first(x, torch.zeros_like(labels))
            second(x, torch.arange(len(labels)))
    assert empty_batch_warnings(record) == 2
    messages = [str(w.message) for w in record if issubclass(w.category, EmptyBatchWarning)]
    assert all("CircleLoss" in msg for msg in messages)


@every_loss
def test_partly_valid_batch_is_finite(name):
    # Half the anchors are singletons; the rest still have positives and negatives.
    x, _ = pk_batch(1, 8, 6, seed=4)
    x.requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 2, 3, 4, 1, 5])
    loss = PAIR_LOSSES[name]()(x, labels)
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(x.grad).all()


# --- Circle hard-margin limit (paper §3.1: the limit γ → ∞) --------------------------------------------------------


def hard_margin_terms(x: torch.Tensor, labels: torch.Tensor, m: float) -> list[float]:
    """max_j φ_n(s_n^j) + max_i φ_p(s_p^i) of every anchor (paper §3.1, m > 0)."""
    xn = x / x.norm(dim=1, keepdim=True)
    sims = (xn @ xn.T).tolist()
    terms = []
    for a, row in enumerate(sims):
        same = [labels[j] == labels[a] for j in range(len(row))]
        phi_p = [(s - 1) ** 2 - m * m for j, s in enumerate(row) if j != a and same[j]]
        phi_n = [s * s - m * m if s >= -m else 0.0 for j, s in enumerate(row) if not same[j]]
        terms.append(max(phi_n) + max(phi_p))
    return terms


@pytest.mark.parametrize("m", [0.25, 0.4])
def test_circle_approaches_hard_margin_limit(m):
    # Every sample twice: each anchor's hardest positive and hardest negative are then tied
    # with their duplicates, so LSE_p − max φ_p·γ → log 2 and LSE_n − max φ_n·γ → log 2, and
    # (1/γ)·L_circle − [max φ_n + max φ_p]_+ → log 4 / γ: the gap shrinks like 1/γ (without
    # ties it would vanish exponentially and hit float64 resolution at γ ≈ 1e3).
    x, labels = pk_batch(4, 2, 3, seed=3, dtype=torch.float64)
    x, labels = torch.cat([x, x]), torch.cat([labels, labels])
    terms = hard_margin_terms(x, labels, m)
    assert min(terms) > 0.05  # the hinge is active for every anchor
    limit = sum(terms) / len(terms)
    gaps = []
    for gamma in (1e2, 1e3, 1e4):
        gap = CircleLoss(m=m, gamma=gamma)(x, labels).item() / gamma - limit
        # softplus(y) − [y]_+ ∈ [0, log 2] and LSE − max ∈ [0, log count]: with K−1 = 3
        # positives and L = 12 negatives, 0 ≤ γ·gap ≤ log 2 + log 3 + log 12.
        assert 0 < gap <= (math.log(2) + math.log(3) + math.log(12)) / gamma
        gaps.append(gap)
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] * 1e4 == pytest.approx(math.log(4), rel=1e-6)
