"""The Fig. 2 closed forms against autograd of the losses as implemented."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from circle_repro.losses.circle import circle_loss_per_anchor
from circle_repro.report import gradients

GRID = np.linspace(0.02, 0.98, 9)
# torch's softplus is linear above 20 (its `threshold`), so its gradient there is 1, not
# sigmoid(z) = 1 - e^-z: relative differences up to e^-20 ~ 2e-9 are expected.
RTOL = 1e-8


def _autograd(loss_fn, s_n, s_p):
    sn = torch.tensor(s_n, dtype=torch.float64, requires_grad=True)
    sp = torch.tensor(s_p, dtype=torch.float64, requires_grad=True)
    loss_fn(sn, sp).backward()
    return abs(sn.grad.item()), abs(sp.grad.item())


@pytest.mark.parametrize("m", [0.25, 0.325, -0.1])
@pytest.mark.parametrize("gamma", [4.0, 16.0])
def test_circle_closed_form_equals_our_loss_gradient(m, gamma):
    def ours(sn, sp):
        sim = torch.stack([sp, sn]).reshape(1, 2)
        pos = torch.tensor([[True, False]])
        return circle_loss_per_anchor(sim, pos, ~pos, m, gamma).sum()

    for s_n in GRID:
        for s_p in GRID:
            closed = gradients.circle(np.array(s_n), np.array(s_p), m, gamma)
            assert np.allclose([float(c) for c in closed], _autograd(ours, s_n, s_p), rtol=RTOL, atol=1e-12)


def test_am_softmax_closed_form_equals_autograd():
    m, gamma = 0.35, 16.0
    for s_n in GRID:
        for s_p in GRID:
            expected = _autograd(lambda sn, sp: F.softplus(gamma * (sn - sp + m)), s_n, s_p)
            closed = gradients.am_softmax(np.array(s_n), np.array(s_p), m, gamma)
            assert np.allclose([float(c) for c in closed], expected, rtol=RTOL)


def test_triplet_and_boundaries_by_hand():
    grad_n, grad_p = gradients.triplet(np.array([0.2, 0.2]), np.array([0.4, 0.6]), m=0.3)
    assert grad_n.tolist() == [1.0, 0.0] and grad_p.tolist() == [1.0, 0.0]
    assert gradients.line_boundary(np.array([0.2]), 0.3)[0] == pytest.approx(0.5)
    # Eq. 8: the circle through (0, 1 - sqrt(2) m); outside its s_n range there is no boundary
    boundary = gradients.circle_boundary(np.array([0.0, 0.5]), 0.25)
    assert boundary[0] == pytest.approx(1 - np.sqrt(2) * 0.25) and np.isnan(boundary[1])


@pytest.mark.parametrize("m", [0.25, 0.325, 0.4, -0.1])
def test_circle_arc_points_lie_on_eq_8(m):
    s_n, s_p = gradients.circle_arc(m, num=101)
    assert np.allclose(s_n**2 + (s_p - 1) ** 2, 2 * m**2, atol=1e-12)
    assert np.all(s_p <= 1 + 1e-12) and np.all(np.diff(s_n) > 0)
    assert (s_n[0], s_n[-1]) == pytest.approx((-np.sqrt(2) * abs(m), np.sqrt(2) * abs(m)))
    # the same arc as the function-of-s_n form used by the Fig. 2 heat maps
    assert np.allclose(gradients.circle_boundary(s_n[1:-1], m), s_p[1:-1], atol=1e-9)  # ends: rounding gives NaN


def test_circle_m_0325_is_tangent_to_the_line_m_035():
    """Spec §4 (Fig. 5): the distance from (0, 1) to s_p - s_n = 0.35 is 0.65/sqrt(2) = sqrt(2) * 0.325."""
    s_n, s_p = gradients.circle_arc(0.325, num=100_001)
    margin = s_p - s_n
    assert margin.min() == pytest.approx(0.35, abs=1e-9)
    touching = margin.argmin()
    assert (s_n[touching], s_p[touching]) == pytest.approx((0.325, 0.675), abs=1e-4)
