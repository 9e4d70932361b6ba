"""Circle loss (Sun et al., CVPR 2020): pair-wise and class-level forms of Eq. 6."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from circle_repro.losses.pair_utils import AnchorPairs, PairwiseLoss, check_real
from circle_repro.losses.proxy import ProxyClassifier, replace_target, target_values
from circle_repro.losses.registry import register_loss


def circle_logits(sim: Tensor, m: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Eq. 6 terms of every similarity read as a positive and as a negative.

    Returns (z_p, z_n) = (γ α_p (s − Δ_p), γ α_n (s − Δ_n)) with the reduced parameters
    O_p = 1+m, O_n = −m, Δ_p = 1−m, Δ_n = m (Eq. 8) and the self-paced weights of Eq. 5,
    α_p = [O_p − s]_+ and α_n = [s − O_n]_+, treated as constants in back-prop (§3.1).
    """
    return positive_logits(sim, m, gamma), negative_logits(sim, m, gamma)


def positive_logits(s_p: Tensor, m: float, gamma: float) -> Tensor:
    """γ α_p (s_p − Δ_p) with α_p = [1 + m − s_p]_+ detached."""
    with torch.no_grad():
        weight = (1 + m - s_p).clamp_(min=0).mul_(gamma)
    return weight * (s_p - (1 - m))


def negative_logits(s_n: Tensor, m: float, gamma: float) -> Tensor:
    """γ α_n (s_n − Δ_n) with α_n = [s_n + m]_+ detached."""
    with torch.no_grad():
        weight = (s_n + m).clamp_(min=0).mul_(gamma)
    return weight * (s_n - m)


class _CircleRows(torch.autograd.Function):
    """Per-row Eq. 6 with a hand-written backward (Eqs. 9–10), in few passes over N×M.

    Negatives are handled densely: ℓ_n = γ α_n (s − Δ_n) for every entry, −∞ at the
    entries that are not negatives (``not_neg``, flat indices into ``sim``). Positives are
    few in P×K batches and are handled as a sparse list (``pos`` flat indices, ``pos_rows``
    their rows): ℓ_p = −γ α_p (s − Δ_p) = γ α_p (Δ_p − s). Each log-sum-exp is shifted by
    its own row maximum, so its sum is ≥ 1 on non-empty rows. The row loss is
    softplus(LSE_p + LSE_n) and its gradient σ(z)·softmax_set(ℓ)·(∓γα), α held constant
    (§3.1). Rows with an empty set give 0 and no gradient. ``pos`` must lie in ``not_neg``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        sim: Tensor,
        pos: Tensor,
        pos_rows: Tensor,
        not_neg: Tensor,
        m: float,
        gamma: float,
    ) -> Tensor:
        # Negatives, dense: γα_n = [γ(s + m)]_+, ℓ_n = γα_n (s − m).
        gamma_alpha = torch.add(sim.new_tensor(gamma * m), sim, alpha=gamma).clamp_min_(0)
        logits = torch.sub(sim, m).mul_(gamma_alpha)
        logits.view(-1).index_fill_(0, not_neg, -math.inf)
        max_n = logits.amax(dim=1).nan_to_num_(neginf=0.0)
        exp_n = logits.sub_(max_n[:, None]).exp_()
        sum_n = exp_n.sum(dim=1)
        # Positives, sparse: −γα_p = −[γ(1 + m − s)]_+, ℓ_p = (−γα_p)(s − 1 + m).
        s_p = sim.take(pos)
        neg_gamma_alpha_p = (s_p - (1 + m)).clamp_max_(0).mul_(gamma)
        logits_p = (s_p - (1 - m)).mul_(neg_gamma_alpha_p)
        max_p = sim.new_full(sum_n.shape, -math.inf)
        max_p = max_p.scatter_reduce_(0, pos_rows, logits_p, "amax").nan_to_num_(neginf=0.0)
        exp_p = logits_p.sub_(max_p[pos_rows]).exp_()
        sum_p = sim.new_zeros(sum_n.shape).index_add_(0, pos_rows, exp_p)
        z = (max_p + max_n).add_((sum_p * sum_n).log_())
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(
                exp_n.mul_(gamma_alpha), exp_p.mul_(neg_gamma_alpha_p), pos, pos_rows,
                sum_p, sum_n, z,
            )
        return F.softplus(z)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weighted_n, weighted_p, pos, pos_rows, sum_p, sum_n, z = ctx.saved_tensors
        scale = torch.sigmoid(z).mul_(grad)  # 0 on rows with an empty set (z = −∞)
        grad_sim = weighted_n.mul(scale.div(sum_n.clamp_min(1))[:, None])
        grad_p = scale.div_(sum_p.clamp_min(1))[pos_rows].mul_(weighted_p)
        grad_sim.view(-1).index_copy_(0, pos, grad_p)  # the negative part is 0 there
        return grad_sim, None, None, None, None, None


def circle_loss_per_anchor(
    sim: Tensor, pos: Tensor, neg: Tensor, m: float, gamma: float
) -> Tensor:
    """Eq. 6 for each row of ``sim``, with positives ``pos`` and negatives ``neg`` (disjoint
    bool masks).

    Uses the stable form softplus(LSE_n(z_n) + LSE_p(−z_p)); rows lacking positives or
    negatives give 0. α is held constant in back-prop. Entries in neither mask are ignored.
    """
    sim = sim.contiguous()
    pos_flat = pos.reshape(-1).nonzero().squeeze(1)
    pos_rows = torch.div(pos_flat, sim.shape[1], rounding_mode="floor")
    not_neg = (~neg).reshape(-1).nonzero().squeeze(1)
    return _CircleRows.apply(sim, pos_flat, pos_rows, not_neg, m, gamma)


@register_loss("circle")
class CircleLoss(PairwiseLoss):
    """Pair-wise Circle loss (Eq. 6) over a mini-batch, each sample serving as an anchor.

    Embeddings are L2-normalised inside; similarities and logits are computed in float32
    (float64 for float64 inputs). The loss is the mean over anchors having at least one
    positive and one negative, and 0 (still attached to the graph, with one
    ``EmptyBatchWarning`` per instance) when there is none. Call signature, reference-set
    and ``all_gather`` semantics: :class:`~circle_repro.losses.pair_utils.PairwiseLoss`.
    """

    def __init__(self, m: float = 0.25, gamma: float = 256, all_gather: bool = False) -> None:
        super().__init__(all_gather=all_gather)
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)

    def per_anchor_loss(self, pairs: AnchorPairs) -> Tensor:
        """Eq. 6 of every anchor against its positives and negatives."""
        n_refs = pairs.sim.shape[1]
        same = pairs.same.reshape(-1).nonzero().squeeze(1)  # flat: positives and self pairs
        rows = torch.div(same, n_refs, rounding_mode="floor")
        if pairs.self_cols is None:
            return _CircleRows.apply(pairs.sim, same, rows, same, self.m, self.gamma)
        if pairs.own_reference:  # self pairs: flat index i·(N + 1), all inside ``same``
            pos = same.remainder(n_refs + 1) != 0
            return _CircleRows.apply(pairs.sim, same[pos], rows[pos], same, self.m, self.gamma)
        self_flat = pairs.self_cols + n_refs * torch.arange(
            pairs.sim.shape[0], device=same.device
        )
        keep = same != self_flat[rows]
        not_neg = torch.cat((same, self_flat))  # self pairs are never negatives
        return _CircleRows.apply(
            pairs.sim, same[keep], rows[keep], not_neg, self.m, self.gamma
        )

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, all_gather={self.all_gather}"


@register_loss("circle_classifier")
class CircleClassifier(ProxyClassifier):
    """Class-level Circle loss: Eq. 6 with K=1 target proxy and L=N−1 non-target proxies.

    Equals softmax cross-entropy over the modified cosine logits of ``logits`` (spec §1.6).
    Face-recognition defaults of the paper (§4.2): γ=256, m=0.25.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, m: float = 0.25, gamma: float = 256
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Modified logits (N, num_classes) of spec §1.6.

        γ α_p (s_p − Δ_p) at the label column and γ α_n (s_n − Δ_n) in the others.
        """
        self.check_inputs(embeddings, labels)
        cos = self.cosine(embeddings)
        # Negative logits over the whole matrix, positive logits for the label column only.
        z_p = positive_logits(target_values(cos, labels), self.m, self.gamma)
        return replace_target(negative_logits(cos, self.m, self.gamma), labels, z_p)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, gamma={self.gamma}"
