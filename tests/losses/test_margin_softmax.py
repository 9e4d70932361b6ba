"""Softmax, NormFace, AM-Softmax/CosFace and ArcFace heads (paper §2 Eq. 2, §4.2 baselines).

Checked against the formulas written out one sample at a time, against
pytorch-metric-learning's CosFaceLoss/ArcFaceLoss, by gradcheck, and on the paper's special
cases (Circle with α frozen to 1 is AM-Softmax; AM-Softmax with m=0 is NormFace).

Definitional differences from PML (read from pytorch_metric_learning/losses/arcface_loss.py,
cosface_loss.py, large_margin_softmax_loss.py):

* PML stores the class weights as W (embedding_size, num_classes), the transpose of ours.
* PML's ArcFaceLoss takes the margin in degrees (it applies np.radians); ours is radians.
* PML ArcFace computes θ = acos(clamp(cos, −1, 1)) and cos(θ+m) directly; ours uses
  cos·cos m − sin·sin m with sin from a cosine clamped to [−1+ε, 1−ε]. Same values; the
  gradients differ only for |cos| > 1−ε (ε the float eps), where ours drops the sin term.
* PML does have the insightface fallback: cos θ − m·sin m (= cos θ − sin(π−m)·m) where
  θ > π−m; its test is ``θ <= π−m`` while ours is ``cos > cos(π−m)``, which only differ at
  θ = π−m exactly (measure zero; not compared).
* PML has no easy_margin; ours with easy_margin agrees with PML only where every target
  cosine is > 0 (both use cos(θ+m) there) and differs where it is < 0 (tested below).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from torch.func import functional_call

import circle_repro.losses.circle as circle_module
from circle_repro.losses import (
    LOSSES,
    AMSoftmaxClassifier,
    ArcFaceClassifier,
    CircleClassifier,
    NormFaceClassifier,
    SoftmaxClassifier,
    build_loss,
)

# --- brute force, one sample and one class at a time, float64 Python math ------------------


def cosine(x: list[float], w: list[float]) -> float:
    dot = sum(a * b for a, b in zip(x, w, strict=True))
    return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in w)))


def inner(x: list[float], w: list[float]) -> float:
    return sum(a * b for a, b in zip(x, w, strict=True))


def arcface_target(c: float, m: float, easy_margin: bool) -> float:
    """ArcFace target cosine from the angle, insightface's easy_margin / th-mm rules."""
    plus_margin = math.cos(math.acos(max(-1.0, min(1.0, c))) + m)
    if easy_margin:
        return plus_margin if c > 0 else c
    return plus_margin if c > math.cos(math.pi - m) else c - math.sin(math.pi - m) * m


def brute_loss(head, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean CE of the logits written from each head's formula, per sample and class."""
    xs = x.detach().double().tolist()
    ws = head.weight.detach().double().tolist()
    total = 0.0
    for xi, y in zip(xs, labels.tolist(), strict=True):
        logits = []
        for j, wj in enumerate(ws):
            if isinstance(head, SoftmaxClassifier):
                bias = 0.0 if head.class_bias is None else head.class_bias[j].item()
                z = inner(xi, wj) + bias
            else:
                c = cosine(xi, wj)
                if isinstance(head, NormFaceClassifier):
                    z = head.gamma * c
                elif isinstance(head, AMSoftmaxClassifier):
                    z = head.gamma * (c - head.m if j == y else c)
                elif isinstance(head, ArcFaceClassifier):
                    t = arcface_target(c, head.m, head.easy_margin) if j == y else c
                    z = head.gamma * t
                else:
                    raise TypeError(type(head))
            logits.append(z)
        top = max(logits)
        total += top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y]
    return total / len(xs)


def make_head(cls, dim: int, classes: int, seed: int, **kwargs):
    torch.manual_seed(seed)
    head = cls(dim, classes, **kwargs).double()
    if isinstance(head, SoftmaxClassifier) and head.class_bias is not None:
        with torch.no_grad():
            head.class_bias.normal_()
    return head


def batch(n: int, dim: int, classes: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64).to(dtype)
    return x, torch.randint(0, classes, (n,), generator=gen)


def opposite_batch(head, labels: torch.Tensor, seed: int, noise: float = 0.05):
    """Embeddings close to −w_y, so the target angle is near π (ArcFace fallback branch)."""
    gen = torch.Generator().manual_seed(seed)
    w = head.weight.detach()
    w = w / w.norm(dim=1, keepdim=True)
    x = -w[labels] + noise * torch.randn(len(labels), w.shape[1], generator=gen, dtype=w.dtype)
    return x


def target_cos(head, x, labels) -> torch.Tensor:
    return head.cosine(x).detach().gather(1, labels[:, None])[:, 0]


CASES = {
    "softmax": (SoftmaxClassifier, {}),
    "softmax_no_bias": (SoftmaxClassifier, {"bias": False}),
    "normface": (NormFaceClassifier, {}),
    "normface_g16": (NormFaceClassifier, {"gamma": 16}),
    "am_softmax": (AMSoftmaxClassifier, {}),
    "am_softmax_negative_m": (AMSoftmaxClassifier, {"m": -0.2, "gamma": 30}),
    "arcface": (ArcFaceClassifier, {}),
    "arcface_easy": (ArcFaceClassifier, {"easy_margin": True}),
    "arcface_m03_g32": (ArcFaceClassifier, {"m": 0.3, "gamma": 32}),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_brute_force_formula(case, seed):
    cls, kwargs = CASES[case]
    head = make_head(cls, 6, 5, seed, **kwargs)
    x, labels = batch(12, 6, 5, seed + 10)
    expected = brute_loss(head, x, labels)
    assert head(x, labels).item() == pytest.approx(expected, rel=1e-10)
    head32 = head.float()
    assert head32(x.float(), labels).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_fallback_branch_matches_brute_force(easy_margin):
    head = make_head(ArcFaceClassifier, 6, 5, 3, easy_margin=easy_margin)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    x = opposite_batch(head, labels, 4)
    cos_y = target_cos(head, x, labels)
    threshold = math.cos(math.pi - head.m)
    assert bool((cos_y < threshold - 1e-3).all())  # every target is in the fallback region
    expected = brute_loss(head, x, labels)
    assert head(x, labels).item() == pytest.approx(expected, rel=1e-10)
    # The fallback logit is γ(cos − m·sin m) (or γ·cos with easy_margin), not γ·cos(θ+m).
    logits = head.logits(x, labels).detach().gather(1, labels[:, None])[:, 0]
    fallback = cos_y if easy_margin else cos_y - head.m * math.sin(head.m)
    torch.testing.assert_close(logits, head.gamma * fallback, rtol=1e-12, atol=1e-12)
    plus_margin = torch.cos(torch.acos(cos_y) + head.m)
    assert not torch.allclose(logits, head.gamma * plus_margin, rtol=1e-3)


def test_arcface_logits_hand_example():
    head = ArcFaceClassifier(2, 3, m=0.5, gamma=64).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]))
    theta = 0.3
    x = torch.tensor([[math.cos(theta), math.sin(theta)]] * 3, dtype=torch.float64)
    logits = head.logits(x, torch.tensor([0, 1, 2]))
    c0, c1 = math.cos(theta), math.sin(theta)  # cosines to w_0 and w_1; to w_2 it is −c0
    th, mm = math.cos(math.pi - 0.5), math.sin(math.pi - 0.5) * 0.5
    expected = [
        [math.cos(theta + 0.5), c1, -c0],  # target w_0, angle 0.3
        [c0, math.cos(math.pi / 2 - theta + 0.5), -c0],  # target w_1, angle π/2 − 0.3
        [c0, c1, -c0 - mm],  # target w_2, angle π − 0.3 > π − m: fallback
    ]
    assert -c0 < th
    torch.testing.assert_close(logits, 64 * torch.tensor(expected, dtype=torch.float64))


# --- pytorch-metric-learning ---------------------------------------------------------------


def pml_pair(kind: str, m: float, gamma: float, classes: int, dim: int, seed: int):
    """Our head and PML's with the same weights (PML stores W transposed)."""
    torch.manual_seed(seed)
    if kind == "cosface":
        ours = AMSoftmaxClassifier(dim, classes, m=m, gamma=gamma).double()
        theirs = pml_losses.CosFaceLoss(classes, dim, margin=m, scale=gamma).double()
    else:
        ours = ArcFaceClassifier(dim, classes, m=m, gamma=gamma).double()
        theirs = pml_losses.ArcFaceLoss(classes, dim, margin=float(np.degrees(m)), scale=gamma).double()
    with torch.no_grad():
        theirs.W.copy_(ours.weight.T)
    return ours, theirs


def assert_same_loss_and_grads(ours, theirs, x, labels):
    x_ours = x.clone().requires_grad_(True)
    x_theirs = x.clone().requires_grad_(True)
    loss_ours, loss_theirs = ours(x_ours, labels), theirs(x_theirs, labels)
    assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-10)
    loss_ours.backward()
    loss_theirs.backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, theirs.W.grad.T, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("m", "gamma"), [(0.35, 64.0), (0.1, 30.0), (-0.2, 16.0)])
def test_am_softmax_matches_pml_cosface(m, gamma, seed):
    ours, theirs = pml_pair("cosface", m, gamma, 7, 10, seed)
    x, labels = batch(16, 10, 7, seed + 20)
    assert_same_loss_and_grads(ours, theirs, x, labels)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("m", "gamma"), [(0.5, 64.0), (0.3, 32.0)])
def test_arcface_matches_pml_arcface(m, gamma, seed):
    ours, theirs = pml_pair("arcface", m, gamma, 7, 10, seed)
    x, labels = batch(16, 10, 7, seed + 30)
    cos_y = target_cos(ours, x, labels)
    assert bool((cos_y > math.cos(math.pi - m) + 1e-3).all())  # the cos(θ+m) branch
    assert_same_loss_and_grads(ours, theirs, x, labels)


@pytest.mark.parametrize("m", [0.5, 0.3])
def test_arcface_fallback_matches_pml_fallback(m):
    ours, theirs = pml_pair("arcface", m, 64.0, 5, 6, 5)
    labels = torch.tensor([0, 1, 2, 3, 4, 4, 3, 2])
    x = opposite_batch(ours, labels, 6)
    assert bool((target_cos(ours, x, labels) < math.cos(math.pi - m) - 1e-3).all())
    assert_same_loss_and_grads(ours, theirs, x, labels)


def test_arcface_easy_margin_agrees_with_pml_only_for_positive_target_cosines():
    ours, theirs = pml_pair("arcface", 0.5, 64.0, 5, 6, 7)
    ours.easy_margin = True
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    w = ours.weight.detach() / ours.weight.detach().norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(8)
    noise = 0.3 * torch.randn(8, 6, generator=gen, dtype=torch.float64)
    x_pos = w[labels] + noise
    assert bool((target_cos(ours, x_pos, labels) > 0.05).all())
    assert_same_loss_and_grads(ours, theirs, x_pos, labels)
    x_neg = -w[labels] + noise  # cos < 0: easy_margin keeps cos θ, PML applies the margin
    assert bool((target_cos(ours, x_neg, labels) < -0.05).all())
    assert ours(x_neg, labels).item() < theirs(x_neg, labels).item() - 1.0


# --- gradcheck -----------------------------------------------------------------------------

GRADCHECK_CASES = {
    "softmax": (SoftmaxClassifier, {}),
    "normface": (NormFaceClassifier, {"gamma": 8}),
    "am_softmax": (AMSoftmaxClassifier, {"gamma": 8}),
    "arcface": (ArcFaceClassifier, {"gamma": 8}),
    "arcface_easy": (ArcFaceClassifier, {"gamma": 8, "easy_margin": True}),
}


def gradcheck_head(head, x, labels):
    params = {name: p.detach().clone().requires_grad_(True) for name, p in head.named_parameters()}
    names = sorted(params)

    def fn(emb, *tensors):
        return functional_call(head, dict(zip(names, tensors, strict=True)), (emb, labels))

    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, *(params[n] for n in names)))


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_wrt_embeddings_and_weights(case):
    cls, kwargs = GRADCHECK_CASES[case]
    head = make_head(cls, 5, 4, 11, **kwargs)
    x, labels = batch(6, 5, 4, 12)
    cos_y = target_cos(head, x, labels)
    # Away from the kinks: ArcFace's threshold, easy_margin's cos=0, and cos=±1.
    for kink in (math.cos(math.pi - 0.5), 0.0, 1.0, -1.0):
        assert bool(((cos_y - kink).abs() > 1e-3).all())
    gradcheck_head(head, x, labels)


@pytest.mark.parametrize("easy_margin", [False, True])
def test_gradcheck_arcface_fallback_branch(easy_margin):
    head = make_head(ArcFaceClassifier, 5, 4, 13, gamma=8, easy_margin=easy_margin)
    labels = torch.tensor([0, 1, 2, 3, 1])
    x = opposite_batch(head, labels, 14, noise=0.1)
    cos_y = target_cos(head, x, labels)
    assert bool((cos_y < math.cos(math.pi - 0.5) - 1e-3).all() & (cos_y > -1 + 1e-3).all())
    gradcheck_head(head, x, labels)


@pytest.mark.parametrize("target", [1.0, -1.0])
def test_arcface_gradient_is_finite_at_cosine_plus_minus_one(target):
    head = ArcFaceClassifier(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    x = torch.tensor([[2.0 * target, 0.0, 0.0]], requires_grad=True)
    cos = head.cosine(x)
    assert cos[0, 0].item() == target  # exactly ±1, the singular point of d sin/d cos
    head(x, torch.tensor([0])).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()
    # Straight at the target cosine, too: finite, and cos·cos m's gradient survives.
    c = torch.tensor([target, 0.5], requires_grad=True)
    head.target_cosine(c).sum().backward()
    assert torch.isfinite(c.grad).all()
    if target == 1.0:
        assert c.grad[0].item() == pytest.approx(math.cos(0.5), rel=1e-6)
    # One ulp inside ±1, the clamp to [−1+ε, 1−ε] keeps d sin/d cos out (bounded gradient):
    # unclamped, it would be −c/sin ≈ 2.9e3 here in float32.
    inside = torch.nextafter(torch.tensor(target), torch.tensor(0.0))
    c = torch.stack([inside, torch.tensor(0.5)]).requires_grad_(True)
    for easy_margin in (False, True):
        c.grad = None
        head.easy_margin = easy_margin
        head.target_cosine(c).sum().backward()
        expected = math.cos(0.5) if target == 1.0 else 1.0  # −1 side: cos θ or fallback
        assert c.grad[0].item() == pytest.approx(expected, rel=1e-6)


# --- the paper's special cases -------------------------------------------------------------


@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.1, 32.0), (-0.1, 64.0)])
def test_circle_with_alpha_frozen_to_one_is_am_softmax_with_margin_1_minus_2m(m, gamma, monkeypatch):
    """α_p=α_n=1 in Eq. 6: z_y = γ(s_p − (1−m)), z_j = γ(s_n − m).

    Adding the constant γm to every logit gives γ(s_p − (1−2m)) and γ s_n, the AM-Softmax
    logits with margin Δ_p − Δ_n = 1−2m; CE is shift-invariant, so the losses are equal.
    """
    circle = make_head(CircleClassifier, 6, 5, 21, m=m, gamma=gamma)
    am = AMSoftmaxClassifier(6, 5, m=1 - 2 * m, gamma=gamma).double()
    with torch.no_grad():
        am.weight.copy_(circle.weight)
    x, labels = batch(10, 6, 5, 22)
    cos = circle.cosine(x)
    target = F.one_hot(labels, 5).bool()
    frozen = torch.where(target, gamma * (cos - (1 - m)), gamma * (cos - m))
    shift = frozen - am.logits(x, labels)
    torch.testing.assert_close(shift, torch.full_like(shift, -gamma * m), rtol=0, atol=1e-9)
    assert F.cross_entropy(frozen, labels).item() == pytest.approx(am(x, labels).item(), rel=1e-10)
    # The same through CircleClassifier.logits (whose CE the fused forward equals), α frozen to 1.
    monkeypatch.setattr(circle_module, "positive_logits", lambda s_p, m_, gamma_: gamma_ * (s_p - (1 - m_)))
    monkeypatch.setattr(circle_module, "negative_logits", lambda s_n, m_, gamma_: gamma_ * (s_n - m_))
    frozen_circle = F.cross_entropy(circle.logits(x, labels), labels)
    assert frozen_circle.item() == pytest.approx(am(x, labels).item(), rel=1e-10)
    monkeypatch.undo()
    assert circle(x, labels).item() != pytest.approx(am(x, labels).item(), rel=1e-3)


def test_am_softmax_with_zero_margin_is_normface():
    am = make_head(AMSoftmaxClassifier, 6, 5, 23, m=0.0, gamma=40)
    normface = NormFaceClassifier(6, 5, gamma=40).double()
    with torch.no_grad():
        normface.weight.copy_(am.weight)
    x, labels = batch(10, 6, 5, 24)
    torch.testing.assert_close(am.logits(x, labels), normface.logits(x, labels), rtol=0, atol=0)
    assert am(x, labels).item() == normface(x, labels).item()


def test_arcface_with_zero_margin_is_normface():
    arc = make_head(ArcFaceClassifier, 6, 5, 25, m=0.0, gamma=40)
    normface = NormFaceClassifier(6, 5, gamma=40).double()
    with torch.no_grad():
        normface.weight.copy_(arc.weight)
    x, labels = batch(10, 6, 5, 26)
    torch.testing.assert_close(arc.logits(x, labels), normface.logits(x, labels), rtol=1e-12, atol=1e-12)


def test_softmax_on_unit_vectors_without_bias_is_normface_with_gamma_1():
    """Eq. 2 with inner products instead of cosines and γ=1 is plain Softmax CE."""
    softmax = make_head(SoftmaxClassifier, 6, 5, 27, bias=False)
    with torch.no_grad():
        softmax.weight.copy_(F.normalize(softmax.weight, dim=1))
    normface = NormFaceClassifier(6, 5, gamma=1).double()
    with torch.no_grad():
        normface.weight.copy_(softmax.weight * 3)  # NormFace ignores the norms
    x, labels = batch(10, 6, 5, 28)
    x = F.normalize(x, dim=1)
    torch.testing.assert_close(softmax.logits(x, labels), normface.logits(x, labels))
    # Off the unit sphere the inner products differ from the cosines.
    assert not torch.allclose(softmax.logits(3 * x, labels), normface.logits(3 * x, labels))


def test_softmax_logits_are_a_linear_layer():
    softmax = make_head(SoftmaxClassifier, 6, 5, 29)
    x, labels = batch(4, 6, 5, 30)
    expected = F.linear(x, softmax.weight, softmax.class_bias)
    torch.testing.assert_close(softmax.logits(x, labels), expected)
    no_bias = SoftmaxClassifier(6, 5, bias=False)
    assert no_bias.class_bias is None and not no_bias.bias
    assert [n for n, _ in softmax.named_parameters()] == ["weight", "class_bias"]
    assert torch.equal(SoftmaxClassifier(6, 5).class_bias, torch.zeros(5))


# --- hard inputs ---------------------------------------------------------------------------

AUTOCAST_HEADS = [
    pytest.param(CircleClassifier, {"gamma": 256.0}, id="circle_g256"),
    pytest.param(SoftmaxClassifier, {}, id="softmax"),
    pytest.param(NormFaceClassifier, {}, id="normface_g64"),
    pytest.param(AMSoftmaxClassifier, {}, id="am_softmax_g64"),
    pytest.param(ArcFaceClassifier, {}, id="arcface_g64"),
    pytest.param(ArcFaceClassifier, {"easy_margin": True}, id="arcface_easy_g64"),
]


@pytest.mark.parametrize(("cls", "kwargs"), AUTOCAST_HEADS)
def test_bf16_autocast_is_finite_and_computed_in_float32(cls, kwargs):
    torch.manual_seed(31)
    head = cls(64, 10, **kwargs)
    labels = torch.arange(16) % 10
    w = head.weight.detach()
    x = torch.randn(16, 64)
    x[:3] = 5 * w[labels[:3]]  # s_p ≈ 1
    x[3:6] = -5 * w[labels[3:6]]  # s_p ≈ −1: Circle's logit γ(1+m−s_p)(s_p−1+m) ≈ −1008
    x = x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(x, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()
    assert head.weight.grad.dtype == torch.float32
    # The same value as without autocast: nothing inside went through bf16 arithmetic.
    assert loss.item() == pytest.approx(head(x, labels).item(), rel=1e-5)
    # bf16 embeddings (as a bf16 backbone would give) are fine too.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_bf16 = head(x.detach().bfloat16().requires_grad_(True), labels)
    assert torch.isfinite(loss_bf16) and loss_bf16.dtype == torch.float32


@pytest.mark.parametrize("case", sorted(CASES))
def test_all_identical_embeddings(case):
    cls, kwargs = CASES[case]
    head = make_head(cls, 6, 5, 32, **kwargs)
    x = torch.randn(1, 6, dtype=torch.float64).repeat(8, 1).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    loss = head(x, labels)
    assert loss.item() == pytest.approx(brute_loss(head, x, labels), rel=1e-10)
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("m", [-0.35, -1.0])
def test_am_softmax_negative_margin_raises_the_target_logit(m):
    head = make_head(AMSoftmaxClassifier, 6, 5, 33, m=m, gamma=16)
    x, labels = batch(8, 6, 5, 34)
    assert head(x, labels).item() == pytest.approx(brute_loss(head, x, labels), rel=1e-10)
    target = head.logits(x, labels).gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(target, 16 * (target_cos(head, x, labels) - m))
    normface = NormFaceClassifier(6, 5, gamma=16).double()
    with torch.no_grad():
        normface.weight.copy_(head.weight)
    assert head(x, labels).item() < normface(x, labels).item()


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [*AUTOCAST_HEADS, pytest.param(SoftmaxClassifier, {"bias": False}, id="softmax_no_bias")],
)
def test_single_class_gives_zero_loss_and_zero_gradient(cls, kwargs):
    head = cls(4, 1, **kwargs)
    x = torch.randn(5, 4, requires_grad=True)
    loss = head(x, torch.zeros(5, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.equal(head.weight.grad, torch.zeros_like(head.weight))


@pytest.mark.parametrize(("cls", "kwargs"), AUTOCAST_HEADS)
def test_empty_batch_gives_what_cross_entropy_gives(cls, kwargs):
    """NaN (the mean over no rows), as F.cross_entropy, and a zero weight gradient."""
    head = cls(4, 3, **kwargs)
    x = torch.zeros(0, 4, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long)
    loss = head(x, labels)
    assert math.isnan(loss.item()) and math.isnan(F.cross_entropy(head.logits(x, labels), labels).item())
    loss.backward()
    assert torch.equal(head.weight.grad, torch.zeros_like(head.weight))


# --- validation and registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "bad"),
    [
        (NormFaceClassifier, {"gamma": 0}, "gamma"),
        (AMSoftmaxClassifier, {"gamma": -1.0}, "gamma"),
        (AMSoftmaxClassifier, {"m": float("nan")}, "m"),
        (AMSoftmaxClassifier, {"m": "0.35"}, "m"),
        (ArcFaceClassifier, {"gamma": float("inf")}, "gamma"),
        (ArcFaceClassifier, {"m": -0.1}, "m"),
        (ArcFaceClassifier, {"m": math.pi}, "m"),
        (ArcFaceClassifier, {"easy_margin": 1}, "easy_margin"),
        (SoftmaxClassifier, {"bias": "yes"}, "bias"),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(cls, kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        cls(4, 3, **kwargs)


NAMES = {
    "softmax": SoftmaxClassifier,
    "normface": NormFaceClassifier,
    "am_softmax": AMSoftmaxClassifier,
    "arcface": ArcFaceClassifier,
}
DEFAULTS = {
    "softmax": {"bias": True},
    "normface": {"gamma": 64.0},
    "am_softmax": {"m": 0.35, "gamma": 64.0},
    "arcface": {"m": 0.5, "gamma": 64.0, "easy_margin": False},
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registry_builds_each_head_with_the_paper_defaults(name):
    assert LOSSES[name] is NAMES[name]
    head = build_loss({"type": name, "embedding_dim": 8, "num_classes": 5})
    assert type(head) is NAMES[name]
    assert head.weight.shape == (5, 8)
    for attr, value in DEFAULTS[name].items():
        assert getattr(head, attr) == value and type(getattr(head, attr)) is type(value)
    x, labels = batch(4, 8, 5, 35, dtype=torch.float32)
    assert torch.isfinite(head(x, labels))


def test_circle_classifier_default_is_the_paper_face_setting():
    head = build_loss({"type": "circle_classifier", "embedding_dim": 8, "num_classes": 5})
    assert (head.m, head.gamma) == (0.25, 256.0)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registry_rejects_unknown_arguments(name):
    with pytest.raises(ValueError, match="margin"):
        build_loss({"type": name, "embedding_dim": 8, "num_classes": 5, "margin": 0.1})
