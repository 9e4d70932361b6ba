"""Pair-wise and class-level Circle loss against Eq. 6 written out literally, and against PML."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pair_reference import assert_matches_reference, cosines, pk_batch
from pytorch_metric_learning import losses as pml_losses

from circle_repro.losses import CircleClassifier, CircleLoss
from circle_repro.losses.circle import circle_loss_per_anchor
from circle_repro.losses.pair_utils import EmptyBatchWarning


def brute_circle(x, labels, m, gamma, ref=None, ref_labels=None, alpha_sims=None):
    """Eq. 6 per anchor, one pair at a time, averaged over anchors with K ≥ 1 and L ≥ 1.

    Without ``ref`` the batch is its own reference set and self pairs are skipped.
    ``alpha_sims``, if given, is the similarity matrix that fixes α (α held constant).
    """
    exclude_self = ref is None
    if ref is None:
        ref, ref_labels = x, labels
    sims = cosines(x, ref)
    alpha_sims = sims if alpha_sims is None else alpha_sims
    q_labels, r_labels = labels.tolist(), ref_labels.tolist()
    losses = []
    for a, row in enumerate(sims):
        sum_n = sum_p = 0.0
        n_pos = n_neg = 0
        for j, s in enumerate(row):
            if exclude_self and j == a:
                continue
            s_alpha = alpha_sims[a][j]
            if r_labels[j] == q_labels[a]:
                alpha_p = max(1 + m - s_alpha, 0.0)
                sum_p += math.exp(-gamma * alpha_p * (s - (1 - m)))
                n_pos += 1
            else:
                alpha_n = max(s_alpha + m, 0.0)
                sum_n += math.exp(gamma * alpha_n * (s - m))
                n_neg += 1
        if n_pos and n_neg:
            losses.append(math.log(1 + sum_n * sum_p))
    return sum(losses) / len(losses) if losses else 0.0


def numerical_grad(fn, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central finite differences of the scalar ``fn`` at float64 ``x``."""
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        orig = flat[i].item()
        flat[i] = orig + eps
        up = fn(x)
        flat[i] = orig - eps
        down = fn(x)
        flat[i] = orig
        gflat[i] = (up - down) / (2 * eps)
    return grad


# --- Eq. 6 literally -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [4.0, 16.0])
@pytest.mark.parametrize("m", [-0.1, 0.25, 0.4])
def test_matches_brute_force_eq6(m, gamma, seed):
    x, labels = pk_batch(4, 3, 6, seed)
    expected = brute_circle(x, labels, m, gamma)
    loss64 = CircleLoss(m=m, gamma=gamma)(x, labels)
    loss32 = CircleLoss(m=m, gamma=gamma)(x.float(), labels)
    assert loss64.dtype == torch.float64 and loss32.dtype == torch.float32
    assert loss64.item() == pytest.approx(expected, rel=1e-10)
    assert loss32.item() == pytest.approx(brute_circle(x.float(), labels, m, gamma), rel=1e-5)


def test_anchors_without_positives_are_left_out_of_the_mean():
    # Classes 3 and 4 are singletons: those two anchors have no positive.
    x, _ = pk_batch(1, 8, 5, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 2, 4])
    loss = CircleLoss(m=0.25, gamma=8)(x, labels)
    assert loss.item() == pytest.approx(brute_circle(x, labels, 0.25, 8), rel=1e-10)
    # Averaging over all 8 rows instead of the 6 valid ones would give a different value.
    assert loss.item() != pytest.approx(brute_circle(x, labels, 0.25, 8) * 6 / 8, rel=1e-3)
    x.requires_grad_(True)
    CircleLoss(m=0.25, gamma=8)(x, labels).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [[3] * 6, list(range(6))], ids=["all_same", "all_distinct"])
def test_no_valid_anchor_gives_zero_with_graph(labels):
    x = torch.randn(6, 4, requires_grad=True)
    with pytest.warns(EmptyBatchWarning, match="no anchor in the batch"):
        loss = CircleLoss()(x, torch.tensor(labels))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_reference_set_matches_brute_force():
    x, labels = pk_batch(3, 2, 5, seed=4)
    ref, ref_labels = pk_batch(3, 3, 5, seed=5)
    loss = CircleLoss(m=0.25, gamma=8)(x, labels, ref, ref_labels)
    expected = brute_circle(x, labels, 0.25, 8, ref=ref, ref_labels=ref_labels)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_ref_includes_query_excludes_self_pairs():
    x, labels = pk_batch(3, 3, 5, seed=6)
    extra, extra_labels = pk_batch(3, 2, 5, seed=7)
    ref, ref_labels = torch.cat([x, extra]), torch.cat([labels, extra_labels])
    loss_fn = CircleLoss(m=0.25, gamma=8)
    assert loss_fn(x, labels, x, labels, ref_includes_query=True).item() == pytest.approx(
        loss_fn(x, labels).item(), rel=1e-12
    )
    # Without the flag the self pair (s = 1) counts as a positive.
    assert loss_fn(x, labels, x, labels).item() != pytest.approx(loss_fn(x, labels).item())
    # Dropping the self pair by hand from the reference set gives the same per-anchor sums.
    per_anchor = [
        brute_circle(
            x[i : i + 1],
            labels[i : i + 1],
            0.25,
            8,
            ref=torch.cat([ref[:i], ref[i + 1 :]]),
            ref_labels=torch.cat([ref_labels[:i], ref_labels[i + 1 :]]),
        )
        for i in range(len(x))
    ]
    got = loss_fn(x, labels, ref, ref_labels, ref_includes_query=True)
    assert got.item() == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-10)


def test_input_validation():
    x, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="gamma"):
        CircleLoss(gamma=0)
    with pytest.raises(ValueError, match="gamma"):
        CircleClassifier(3, 2, gamma=-1.0)
    with pytest.raises(ValueError, match="ref_labels"):
        CircleLoss()(x, labels, ref_embeddings=x)
    with pytest.raises(ValueError, match="labels"):
        CircleLoss()(x, labels[:3])


# --- pytorch-metric-learning -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.4, 80.0)])
def test_matches_pml_loss_and_gradient(m, gamma, seed):
    x, labels = pk_batch(8, 4, 16, seed, dtype=torch.float32)
    ours_x, pml_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = CircleLoss(m=m, gamma=gamma)(ours_x, labels)
    pml = pml_losses.CircleLoss(m=m, gamma=gamma)(pml_x, labels)
    assert_matches_reference(ours, ours_x, pml, pml_x)


def test_regression_loss_not_stuck_at_zero_at_face_setting():
    # PML issue #173: before v0.9.91 the loss was identically 0 at m=0.25, γ=256.
    x, labels = pk_batch(8, 4, 32, seed=11, dtype=torch.float32)
    x.requires_grad_(True)
    loss = CircleLoss(m=0.25, gamma=256)(x, labels)
    assert loss.item() > 0
    loss.backward()
    assert x.grad.abs().sum() > 0


# --- gradients ----------------------------------------------------------------------------


def test_gradient_is_that_of_eq6_with_alpha_frozen():
    # gradcheck on the loss itself cannot pass: α = [·]_+ moves with the input, but back-prop
    # holds it constant (§3.1). So compare autograd with finite differences of Eq. 6 whose α
    # is frozen at the evaluation point.
    x, labels = pk_batch(3, 3, 4, seed=8)
    x0 = x.clone()
    x.requires_grad_(True)
    CircleLoss(m=0.25, gamma=8)(x, labels).backward()
    frozen = cosines(x0, x0)
    expected = numerical_grad(lambda e: brute_circle(e, labels, 0.25, 8, alpha_sims=frozen), x0.clone())
    torch.testing.assert_close(x.grad, expected, rtol=1e-6, atol=1e-8)
    # ...and differs from the gradient of the function with α moving.
    moving = numerical_grad(lambda e: brute_circle(e, labels, 0.25, 8), x0.clone())
    assert not torch.allclose(x.grad, moving, rtol=1e-3, atol=1e-5)


def test_gradient_wrt_similarities_is_eq9_and_eq10():
    m, gamma = 0.25, 4.0
    s_p = [0.6, 0.3]
    s_n = [0.2, -0.1, 0.35]  # all above −m: no α_n is clipped
    sim = torch.tensor([s_p + s_n], dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[True, True, False, False, False]])
    loss = circle_loss_per_anchor(sim, pos, ~pos, m, gamma).sum()
    loss.backward()

    z = 1 - math.exp(-loss.item())
    ln = [gamma * (s * s - m * m) for s in s_n]  # ℓ_n^j = γ((s_n^j)² − m²)
    lp = [gamma * ((s - 1) ** 2 - m * m) for s in s_p]  # ℓ_p^i = γ((s_p^i − 1)² − m²)
    soft_n = [math.exp(v) / sum(math.exp(u) for u in ln) for v in ln]
    soft_p = [math.exp(v) / sum(math.exp(u) for u in lp) for v in lp]
    eq10 = [z * w * gamma * (s - 1 - m) for w, s in zip(soft_p, s_p, strict=True)]
    eq9 = [z * w * gamma * (s + m) for w, s in zip(soft_n, s_n, strict=True)]
    expected = torch.tensor(eq10 + eq9, dtype=torch.float64)
    torch.testing.assert_close(sim.grad[0], expected, rtol=1e-12, atol=0)
    # With α not detached the negatives would get 2γ s_n·softmax·Z instead (paper §3.1).
    not_detached = [z * w * 2 * gamma * s for w, s in zip(soft_n, s_n, strict=True)]
    assert not torch.allclose(sim.grad[0, 2:], torch.tensor(not_detached, dtype=torch.float64))


# --- overflow and low precision ----------------------------------------------------------------


def test_extreme_similarities_do_not_overflow_at_gamma_256():
    # Every anchor has its only positive at s_p = −1 (ℓ = 256·2.25·1.75 = 1008) and two
    # negatives at s_n = 0 (ℓ = −γm² = −16 each); exp overflows fp32 (and fp64) there.
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = CircleLoss(m=0.25, gamma=256)(x, labels)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(1008 - 16 + math.log(2), rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    x, labels = pk_batch(8, 4, 32, seed=12, dtype=torch.float32)
    low = x.to(dtype).requires_grad_(True)
    loss = CircleLoss(m=0.25, gamma=256)(low, labels)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    reference = CircleLoss(m=0.25, gamma=256)(low.detach().float(), labels)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert loss.item() == pytest.approx(CircleLoss(m=0.25, gamma=256)(x, labels).item(), rel=2e-2)
    loss.backward()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad).all()


def test_autocast_does_not_lower_the_precision():
    x, labels = pk_batch(8, 4, 32, seed=13, dtype=torch.float32)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = CircleLoss(m=0.25, gamma=256)(x, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(CircleLoss(m=0.25, gamma=256)(x, labels).item(), rel=1e-6)


# --- class-level form ---------------------------------------------------------------------------


def brute_classifier(x, weight, labels, m, gamma, alpha_sims=None):
    """Eq. 6 per sample with K=1 (target proxy) and L=N−1 (other proxies), averaged."""
    sims = cosines(x, weight)
    alpha_sims = sims if alpha_sims is None else alpha_sims
    total = 0.0
    for a, (row, y) in enumerate(zip(sims, labels.tolist(), strict=True)):
        alpha_p = max(1 + m - alpha_sims[a][y], 0.0)
        sum_p = math.exp(-gamma * alpha_p * (row[y] - (1 - m)))
        sum_n = sum(math.exp(gamma * max(alpha_sims[a][j] + m, 0.0) * (s - m)) for j, s in enumerate(row) if j != y)
        total += math.log(1 + sum_n * sum_p)
    return total / len(sims)


@pytest.mark.parametrize("m", [-0.1, 0.25])
@pytest.mark.parametrize("seed", [0, 1])
def test_classifier_is_eq6_with_one_positive(m, seed):
    torch.manual_seed(seed)
    head = CircleClassifier(embedding_dim=6, num_classes=5, m=m, gamma=16).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (10,))
    logits = head.logits(x, labels)
    assert logits.shape == (10, 5)
    expected = brute_classifier(x, head.weight, labels, m, 16)
    assert F.cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-10)
    assert head(x, labels).item() == pytest.approx(expected, rel=1e-10)
    assert head.float()(x.float(), labels).item() == pytest.approx(expected, rel=1e-5)


def test_classifier_logits_hand_example():
    m, gamma = 0.25, 256.0
    head = CircleClassifier(embedding_dim=2, num_classes=3, m=m, gamma=gamma)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.6, 0.8], [0.0, 2.0], [-3.0, 0.0]]))
    logits = head.logits(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    s_p, s_n = 0.6, [0.0, -1.0]
    expected = [gamma * (1 + m - s_p) * (s_p - 1 + m)]
    expected += [gamma * max(s + m, 0) * (s - m) for s in s_n]
    torch.testing.assert_close(logits[0], torch.tensor(expected), rtol=1e-6, atol=1e-4)


def test_classifier_gradient_is_that_of_eq6_with_alpha_frozen():
    torch.manual_seed(3)
    head = CircleClassifier(embedding_dim=4, num_classes=3, m=0.25, gamma=8).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, 0])
    head(x, labels).backward()
    x0, w0 = x.detach().clone(), head.weight.detach().clone()
    frozen = cosines(x0, w0)
    grad_x = numerical_grad(lambda e: brute_classifier(e, w0, labels, 0.25, 8, frozen), x0.clone())
    grad_w = numerical_grad(lambda w: brute_classifier(x0, w, labels, 0.25, 8, frozen), w0.clone())
    torch.testing.assert_close(x.grad, grad_x, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(head.weight.grad, grad_w, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (-0.2, 64.0), (0.4, 80.0)])
def test_classifier_forward_equals_cross_entropy_of_its_logits(m, gamma):
    """The fused forward (loss and gradient formed together) against its logits then
    F.cross_entropy under autograd, with target cosines near +1 and −1 (logits ≈ −1000 at
    γ=256) and int32 labels."""
    torch.manual_seed(4)
    head = CircleClassifier(embedding_dim=8, num_classes=6, m=m, gamma=gamma).double()
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2], dtype=torch.int32)
    x = torch.randn(9, 8, dtype=torch.float64)
    w = head.weight.detach()
    x[:2] = 5 * w[labels[:2].long()]  # s_p ≈ 1
    x[2:4] = -5 * w[labels[2:4].long()]  # s_p ≈ −1
    results = []
    for fused in (True, False):
        head.zero_grad()
        xs = x.clone().requires_grad_(True)
        loss = head(xs, labels) if fused else F.cross_entropy(head.logits(xs, labels), labels.long())
        (3 * loss).backward()
        results.append((loss.detach(), xs.grad, head.weight.grad.clone()))
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_classifier_without_gradient_gives_the_same_loss():
    torch.manual_seed(5)
    head = CircleClassifier(embedding_dim=4, num_classes=3, gamma=16).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        loss = head(x, labels)
    assert loss.item() == pytest.approx(brute_classifier(x, head.weight, labels, 0.25, 16), rel=1e-10)


def test_classifier_half_precision_input():
    head = CircleClassifier(embedding_dim=16, num_classes=10)
    x = torch.randn(8, 16).half()
    labels = torch.arange(8)
    loss = head(x, labels)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert loss.item() == pytest.approx(head(x.float(), labels).item(), rel=1e-6)
