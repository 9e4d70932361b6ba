"""Circle loss (Sun et al., CVPR 2020): pair-wise and class-level forms of Eq. 6."""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from circle_repro.losses.pair_utils import (
    AnchorPairs,
    PairwiseLoss,
    autocast_off,
    check_batch,
    check_real,
    gram_grad_matrix,
    normalize_rows,
    similarity_dtype,
)
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
    return _NegativeLogits.apply(s_n, m, gamma)


class _NegativeLogits(torch.autograd.Function):
    """γ α_n (s − m) = γ (c² − m²) with c = max(s, −m), and its gradient γ α_n = γ (c + m) (α_n
    detached): two passes over the (N, C) cosines forward and two backward, where the autograd
    graph of the product takes five and one."""

    @staticmethod
    def forward(ctx: Any, s_n: Tensor, m: float, gamma: float) -> Tensor:
        clamped = s_n.clamp(min=-m)
        ctx.save_for_backward(clamped)
        ctx.m, ctx.gamma = m, gamma
        return torch.addcmul(
            torch.full((), -gamma * m * m, dtype=s_n.dtype, device=s_n.device), clamped, clamped, value=gamma
        )

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (clamped,) = ctx.saved_tensors
        return torch.addcmul(grad * (ctx.gamma * ctx.m), grad, clamped, value=ctx.gamma), None, None


_LOG2E = 1 / math.log(2)


class _RowTerms(NamedTuple):
    """Eq. 6 inside the softplus, per row of a similarity matrix, and its gradient's parts.

    ``z`` (N,) = LSE_n(ℓ_n) + LSE_p(ℓ_p), −∞ on rows lacking a positive or a negative.
    ``exp_n`` (N, M) and ``exp_p`` (one per positive) are exp(ℓ − row max) times α: 0 where
    not a negative (``exp_n``); ``sum_n`` and ``sum_p`` (N,) are the sums of exp(ℓ − row max),
    ≥ 1 on rows with a non-empty set and 0 otherwise.
    """

    z: Tensor
    exp_n: Tensor
    exp_p: Tensor
    sum_n: Tensor
    sum_p: Tensor


def _row_terms(sim: Tensor, pos: Tensor, pos_rows: Tensor, ignored: Tensor | None, m: float, gamma: float) -> _RowTerms:
    """:class:`_RowTerms` of ``sim`` (contiguous) in a few passes over it.

    Positives are few in P×K batches and handled as a sparse list (``pos`` flat indices
    into ``sim``, ``pos_rows`` their rows): ℓ_p = −γ α_p (s − Δ_p) = γ(q² − m²) with
    q = max(1 − s, −m), α_p = q + m. Negatives are every other entry except ``ignored``
    (flat indices; None: the diagonal, for a batch against itself), handled densely:
    ℓ_n = γ α_n (s − Δ_n) = γ(c² − m²) with c = max(s, −m), α_n = c + m. Exponentials are
    taken in base 2 of ℓ·log₂e, each set shifted by its own row maximum: ``exp2`` keeps its
    speed where ``exp`` slows down by an order of magnitude (results in the subnormal range,
    common once classes separate).
    """
    n = sim.shape[0]
    gamma2 = gamma * _LOG2E
    shift = sim.new_tensor(-gamma2 * m * m)
    # Negatives, dense.
    alpha_n = sim.clamp_min(-m)
    logits = torch.addcmul(shift, alpha_n, alpha_n, value=gamma2)
    logits.view(-1).index_fill_(0, pos, -math.inf)
    if ignored is None:
        logits.diagonal().fill_(-math.inf)
    else:
        logits.view(-1).index_fill_(0, ignored, -math.inf)
    max_n = logits.amax(dim=1).nan_to_num_(neginf=0.0)
    exp_n = logits.sub_(max_n[:, None]).exp2_()
    sum_n = exp_n.sum(dim=1)
    exp_n.mul_(alpha_n.add_(m))
    # Positives, sparse.
    alpha_p = (1 - sim.take(pos)).clamp_min_(-m)
    logits_p = torch.addcmul(shift, alpha_p, alpha_p, value=gamma2)
    max_p = sim.new_full((n,), -math.inf).scatter_reduce_(0, pos_rows, logits_p, "amax")
    max_p.nan_to_num_(neginf=0.0)
    exp_p = logits_p.sub_(max_p[pos_rows]).exp2_()
    sum_p = sim.new_zeros(n).index_add_(0, pos_rows, exp_p)
    z = (max_n + max_p).add_((sum_n * sum_p).log2_()).div_(_LOG2E)
    return _RowTerms(z, exp_n, exp_p.mul_(alpha_p.add_(m)), sum_n, sum_p)


def _sim_grad(terms: _RowTerms, pos: Tensor, pos_rows: Tensor, row_grad: Tensor, gamma: float) -> Tensor:
    """∂/∂sim of Σ_i row_grad_i · softplus(z_i), α held constant (Eqs. 9–10, §3.1), written
    over ``terms.exp_n``.

    σ(z)·softmax_n·γα_n at the negatives and −σ(z)·softmax_p·γα_p at the positives, 0
    elsewhere and on rows with an empty set (σ(−∞) = 0). ``row_grad`` is (N,) or a scalar.
    """
    scale = torch.sigmoid(terms.z).mul_(row_grad * gamma)
    grad = terms.exp_n.mul_(scale.div(terms.sum_n.clamp_min(1))[:, None])
    grad_p = scale.div_(terms.sum_p.clamp_min(1)).neg_()[pos_rows].mul_(terms.exp_p)
    return grad.view(-1).index_copy_(0, pos, grad_p).view_as(grad)


class _CircleRows(torch.autograd.Function):
    """Eq. 6 per row of a similarity matrix (:func:`_row_terms`), backward by :func:`_sim_grad`.

    Not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, sim: Tensor, pos: Tensor, pos_rows: Tensor, ignored: Tensor, m: float, gamma: float
    ) -> Tensor:
        terms = _row_terms(sim.contiguous(), pos, pos_rows, ignored, m, gamma)
        ctx.save_for_backward(pos, pos_rows, *terms)
        ctx.gamma = gamma
        return F.softplus(terms.z)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        pos, pos_rows, z, exp_n, *rest = ctx.saved_tensors
        terms = _RowTerms(z, exp_n.clone(), *rest)  # saved tensors stay intact for a rerun
        return _sim_grad(terms, pos, pos_rows, grad, ctx.gamma), None, None, None, None, None


class _CircleGramLoss(torch.autograd.Function):
    """Mean Eq. 6 over the valid anchors of a batch that is its own reference set.

    From the embeddings ``x`` in one function: normalisation, similarities x̂ x̂ᵀ, the row
    terms and, when ``x`` needs a gradient, its closed form up to the upstream factor, as
    the matrix of :func:`gram_grad_matrix`; the backward is one matmul. ``pos``/``pos_rows``:
    positive pairs, self pairs excluded (:func:`positive_pairs`). Returns the loss and the
    valid-anchor mask (N,), an anchor being valid when it has a positive and a negative
    (z > −∞). Not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, pos: Tensor, pos_rows: Tensor, m: float, gamma: float
    ) -> tuple[Tensor, Tensor]:
        unit, norm = normalize_rows(x)
        sim = unit @ unit.T
        terms = _row_terms(sim, pos, pos_rows, None, m, gamma)
        valid = terms.z != -math.inf  # NaN rows stay in, and make the loss NaN
        count = valid.sum().clamp_min_(1).to(sim.dtype)
        ctx.mark_non_differentiable(valid)
        loss = F.softplus(terms.z).sum() / count
        if ctx.needs_input_grad[0]:
            grad_sim = _sim_grad(terms, pos, pos_rows, count.reciprocal(), gamma)
            del terms  # grad_sim is terms.exp_n: freed by the next line (peak memory)
            grad_sim = grad_sim + grad_sim.T
            ctx.save_for_backward(gram_grad_matrix(grad_sim, sim, norm), unit, norm)
        return loss, valid

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _: Tensor):  # type: ignore[override]
        grad_matrix, unit, norm = ctx.saved_tensors
        return (grad_matrix @ unit).mul_(grad / norm), None, None, None, None


class _CircleCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over the class-level Circle logits of cosines (N, C).

    Logits as :meth:`CircleClassifier.logits`, in base 2 (``exp2`` as in :func:`_row_terms`);
    the gradient w.r.t. the cosines, softmax·γα_n off the target and (softmax − 1)·γα_p on
    it (α detached), is formed in the forward from the exponentials already there: eight
    passes over (N, C) in all, where logits then ``F.cross_entropy`` take about fourteen.
    Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, cos: Tensor, labels: Tensor, m: float, gamma: float) -> Tensor:  # type: ignore[override]
        rows = cos.shape[0]
        gamma2 = gamma * _LOG2E
        target = labels[:, None]
        s_p = cos.gather(1, target)
        alpha_p = (1 + m - s_p).clamp_min_(0)
        logit_p = alpha_p * (s_p - (1 - m)) * gamma2
        alpha_n = cos.clamp_min(-m)
        logits = torch.addcmul(cos.new_tensor(-gamma2 * m * m), alpha_n, alpha_n, value=gamma2)
        logits.scatter_(1, target, logit_p)
        row_max = logits.amax(dim=1, keepdim=True)
        exp = logits.sub_(row_max).exp2_()
        sum_exp = exp.sum(dim=1, keepdim=True)
        loss = (sum_exp.log2() + row_max - logit_p).sum() / (rows * _LOG2E)
        if ctx.needs_input_grad[0]:
            softmax_p = exp.gather(1, target) / sum_exp
            gamma_mean = gamma / max(rows, 1)  # an empty batch: NaN loss, as F.cross_entropy
            scale = gamma_mean / sum_exp
            grad = exp.mul_(torch.addcmul(scale * m, alpha_n, scale, out=alpha_n))
            grad.scatter_(1, target, (softmax_p - 1).mul_(alpha_p).mul_(gamma_mean))
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (grad_cos,) = ctx.saved_tensors
        return grad_cos * grad, None, None, None


def positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Positive pairs of a batch against itself, self pairs excluded: flat indices into the
    (N, N) similarity matrix, in row-major order, and their rows."""
    same = labels[:, None] == labels[None, :]
    same.diagonal().fill_(False)
    pos = same.view(-1).nonzero().squeeze(1)
    return pos, torch.div(pos, labels.shape[0], rounding_mode="floor")


def circle_loss_per_anchor(sim: Tensor, pos: Tensor, neg: Tensor, m: float, gamma: float) -> Tensor:
    """Eq. 6 for each row of ``sim``, with positives ``pos`` and negatives ``neg`` (disjoint
    bool masks).

    Uses the stable form softplus(LSE_n(z_n) + LSE_p(−z_p)); rows lacking positives or
    negatives give 0. α is held constant in back-prop. Entries in neither mask are ignored.
    """
    pos_flat = pos.reshape(-1).nonzero().squeeze(1)
    pos_rows = torch.div(pos_flat, sim.shape[1], rounding_mode="floor")
    ignored = (~(pos | neg)).reshape(-1).nonzero().squeeze(1)
    return _CircleRows.apply(sim, pos_flat, pos_rows, ignored, m, gamma)


@register_loss("circle")
class CircleLoss(PairwiseLoss):
    """Pair-wise Circle loss (Eq. 6) over a mini-batch, each sample serving as an anchor.

    Embeddings are L2-normalised inside; similarities and logits are computed in float32
    (float64 for float64 inputs). The loss is the mean over anchors having at least one
    positive and one negative, and 0 (still attached to the graph, with one
    ``EmptyBatchWarning`` per instance) when there is none. Call signature, reference-set
    and ``all_gather`` semantics: :class:`~circle_repro.losses.pair_utils.PairwiseLoss`.
    """

    paper_loss = "circle"
    sweepable = ("gamma", "m")
    arguments: ClassVar[dict[str, dict]] = {
        "m": {"type": "number", "minimum": -1, "maximum": 1, "description": "relaxation margin m (Eq. 8)"},
        "gamma": {"type": "number", "exclusiveMinimum": 0, "description": "scale factor gamma"},
    }

    def __init__(self, m: float = 0.25, gamma: float = 256, all_gather: bool = False) -> None:
        super().__init__(all_gather=all_gather)
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)

    def batch_loss(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None,
        ref_labels: Tensor | None,
        ref_includes_query: bool,
    ) -> tuple[Tensor, Tensor]:
        """Without a reference set, the fused :class:`_CircleGramLoss`; else the generic
        pass over :meth:`per_anchor_loss`."""
        if ref_embeddings is not None or ref_labels is not None:
            return super().batch_loss(embeddings, labels, ref_embeddings, ref_labels, ref_includes_query)
        check_batch(embeddings, labels)
        pos, pos_rows = positive_pairs(labels)
        x = embeddings.to(similarity_dtype(embeddings))
        with autocast_off(x.device):
            return _CircleGramLoss.apply(x, pos, pos_rows, self.m, self.gamma)

    def per_anchor_loss(self, pairs: AnchorPairs) -> Tensor:
        """Eq. 6 of every anchor against its positives and negatives."""
        return circle_loss_per_anchor(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, all_gather={self.all_gather}"


@register_loss("circle_classifier")
class CircleClassifier(ProxyClassifier):
    """Class-level Circle loss: Eq. 6 with K=1 target proxy and L=N−1 non-target proxies.

    Equals softmax cross-entropy over the modified cosine logits of ``logits`` (paper §3, Eq. 6).
    Face-recognition defaults of the paper (§4.2): γ=256, m=0.25.
    """

    paper_loss = "circle"
    sweepable = ("gamma", "m")
    arguments: ClassVar[dict[str, dict]] = {
        "m": {"type": "number", "minimum": -1, "maximum": 1, "description": "relaxation margin m (Eq. 8)"},
        "gamma": {"type": "number", "exclusiveMinimum": 0, "description": "scale factor gamma"},
    }

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.25, gamma: float = 256) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Modified logits (N, num_classes) of the paper's Eq. 6 (§3).

        γ α_p (s_p − Δ_p) at the label column and γ α_n (s_n − Δ_n) in the others.
        """
        self.check_inputs(embeddings, labels)
        cos = self.cosine(embeddings)
        # Negative logits over the whole matrix, positive logits for the label column only.
        z_p = positive_logits(target_values(cos, labels), self.m, self.gamma)
        return replace_target(negative_logits(cos, self.m, self.gamma), labels, z_p)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of :meth:`logits` against ``labels``, fused
        (:class:`_CircleCrossEntropy`)."""
        self.check_inputs(embeddings, labels)
        cos = self.cosine(embeddings)
        with autocast_off(cos.device):
            return _CircleCrossEntropy.apply(cos, labels.long(), self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, gamma={self.gamma}"
