"""Closed-form gradients of the binary (one s_p, one s_n) losses of the paper's Fig. 2 (paper §3.3).

Each function returns (|dL/ds_n|, |dL/ds_p|) on arrays of similarities, and each loss's decision
boundary is given as a function of s_n.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def triplet(s_n: np.ndarray, s_p: np.ndarray, m: float) -> tuple[np.ndarray, np.ndarray]:
    """L = [s_n - s_p + m]_+: unit gradients before the boundary, zero after it."""
    active = (s_n - s_p + m > 0).astype(float)
    return active, active


def am_softmax(s_n: np.ndarray, s_p: np.ndarray, m: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """L = softplus(gamma (s_n - s_p + m)): equal gradients on s_n and s_p (Eq. 2, one negative)."""
    grad = gamma * expit(gamma * (s_n - s_p + m))
    return grad, grad


def circle(s_n: np.ndarray, s_p: np.ndarray, m: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """L = softplus(z), z = gamma (alpha_n (s_n - m) - alpha_p (s_p - 1 + m)), alpha detached (Eq. 6)."""
    alpha_n = np.maximum(s_n + m, 0.0)
    alpha_p = np.maximum(1 + m - s_p, 0.0)
    sigma = expit(gamma * (alpha_n * (s_n - m) - alpha_p * (s_p - 1 + m)))
    return gamma * alpha_n * sigma, gamma * alpha_p * sigma


def line_boundary(s_n: np.ndarray, m: float) -> np.ndarray:
    """s_p on the boundary s_p - s_n = m of triplet and AM-Softmax (Fig. 1a)."""
    return s_n + m


def circle_boundary(s_n: np.ndarray, m: float) -> np.ndarray:
    """s_p on the Circle boundary s_n^2 + (s_p - 1)^2 = 2 m^2 (Eq. 8), NaN outside the circle."""
    inside = 2 * m**2 - s_n**2
    with np.errstate(invalid="ignore"):
        return np.where(inside >= 0, 1 - np.sqrt(inside), np.nan)


def circle_arc(m: float, num: int = 361) -> tuple[np.ndarray, np.ndarray]:
    """``num`` points (s_n, s_p) on the lower half (s_p <= 1) of the Circle boundary, the circle of
    Eq. 8 centred at (0, 1) with radius sqrt(2)|m|, ordered by increasing s_n."""
    if num < 2:
        raise ValueError(f"circle_arc needs at least 2 points; got num={num}")
    theta = np.linspace(np.pi, 2 * np.pi, num)
    radius = np.sqrt(2) * abs(m)
    return radius * np.cos(theta), 1 + radius * np.sin(theta)
