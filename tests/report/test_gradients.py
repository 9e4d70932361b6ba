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


def test_figure_is_written(tmp_path, repo_params):
    from circle_repro.report.figures import gradient_maps

    path = gradient_maps(repo_params["report"]["gradient_maps"], tmp_path / "g.png", resolution=21)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
