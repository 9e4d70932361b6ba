"""Generalized lifted structure loss (Hermans et al., 2017, "In Defense of the Triplet Loss").

Per anchor a, with D the Euclidean distance between L2-normalised embeddings,
D = ‖x̂_a − x̂_k‖ = sqrt(2 − 2 cos), positives P_a and negatives N_a (self pair excluded):

    L_a = [ log Σ_{p∈P_a} e^{D_ap} + log Σ_{n∈N_a} e^{margin − D_an} ]_+

and the loss is the mean over anchors having at least one positive and one negative.

This is pytorch-metric-learning's ``GeneralizedLiftedStructureLoss`` with its default
distance (``LpDistance``: normalised embeddings, p=2, power=1), ``pos_margin=0`` and
``neg_margin=margin`` (PML's defaults, 0 and 1). Differences from PML:

* PML's ``MeanReducer`` averages over all N anchors, and an anchor lacking positives (or
  negatives) there still contributes [LSE of the other set]_+, since PML sets an empty
  log-sum-exp to 0 rather than −∞. Here such anchors are left out, so the two agree exactly
  when every anchor is valid (P×K batches, K ≥ 2) and otherwise
  ``PML · N == ours · n_valid + Σ_{invalid a} [LSE of a's non-empty set]_+``.
* PML's class named ``LiftedStructureLoss`` is the *original* lifted structure loss of
  Oh Song et al. (2016): a squared hinge per positive pair over the negatives of both of its
  ends, averaged over positive pairs. It is a different function; it is not implemented here.

D has an infinite derivative at 0 (identical embeddings); there its gradient is taken as 0.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from circle_repro.losses.pair_utils import (
    AnchorPairs,
    PairwiseLoss,
    check_real,
    masked_logsumexp,
)
from circle_repro.losses.registry import register_loss


def unit_distance(sim: Tensor) -> Tensor:
    """Euclidean distance sqrt(2 − 2s) of unit vectors with cosine ``sim``; zero gradient at 0."""
    squared = (2 - 2 * sim).clamp_min(0)
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


@register_loss("lifted_structure")
class LiftedStructureLoss(PairwiseLoss):
    """Generalized lifted structure loss on normalised-embedding Euclidean distance.

    See :mod:`circle_repro.losses.lifted_structure` for the definition and how it relates to
    pytorch-metric-learning. Call signature, reference-set and ``all_gather`` semantics:
    :class:`~circle_repro.losses.pair_utils.PairwiseLoss`.
    """

    paper_loss = "lifted_struct"
    sweepable = ()
    arguments: ClassVar[dict[str, dict]] = {
        "margin": {"type": "number", "minimum": 0},
    }

    def __init__(self, margin: float = 1.0, all_gather: bool = False) -> None:
        super().__init__(all_gather=all_gather)
        self.margin = check_real("margin", margin)

    def per_anchor_loss(self, pairs: AnchorPairs) -> Tensor:
        """[LSE_p(D) + LSE_n(margin − D)]_+ of every anchor."""
        dist = unit_distance(pairs.sim)
        pos_lse = masked_logsumexp(dist, pairs.pos)
        neg_lse = masked_logsumexp(self.margin - dist, pairs.neg)
        return torch.relu(pos_lse + neg_lse)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, all_gather={self.all_gather}"
