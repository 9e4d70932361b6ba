"""Class-level baselines of the paper's face tables: Softmax, NormFace, AM-Softmax, ArcFace.

Sun et al. (CVPR 2020) §2, Eq. 2: with class-level labels the unified loss (Eq. 1) is
AM-Softmax/CosFace; with m=0 it is NormFace, and with inner products instead of cosines and
γ=1 it is plain Softmax cross-entropy. ArcFace (Deng et al., CVPR 2019) is the additive
angular-margin variant the paper also compares against (§4.2: AM-Softmax γ=64, m=0.35;
ArcFace γ=64, m=0.5). Every head is a :class:`ProxyClassifier`: logits, then mean CE.

All logits are computed in float32 (float64 for float64 inputs) with autocast off, so the
scale γ never meets fp16/bf16 arithmetic.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from circle_repro.losses.pair_utils import autocast_off, check_real, similarity_dtype
from circle_repro.losses.proxy import ProxyClassifier, replace_target, target_values
from circle_repro.losses.registry import register_loss


@register_loss("softmax")
class SoftmaxClassifier(ProxyClassifier):
    """Plain Softmax cross-entropy: logits W x + b, inner products, no normalisation, γ=1.

    The paper's "Softmax" baseline (§2, below Eq. 2: "inner products instead of cosines and
    γ=1"). ``bias`` is the constructor flag (kept as the attribute of that name, so configs
    round-trip); the bias vector itself, if any, is the parameter ``class_bias`` (C,),
    initialised to zero. It takes the backbone's raw features (``takes_unit_embeddings`` False).
    """

    class_bias: nn.Parameter | None
    takes_unit_embeddings = False

    paper_loss = "softmax"
    sweepable = ()
    arguments: ClassVar[dict[str, dict]] = {
        "bias": {"type": "boolean"},
    }

    def __init__(self, embedding_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(embedding_dim, num_classes)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be a bool, got {bias!r}")
        self.bias = bias
        if bias:
            self.class_bias = nn.Parameter(torch.zeros(num_classes))
        else:
            self.register_parameter("class_bias", None)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Inner-product logits W x + b (N, C), in float32 (float64 for float64 inputs)."""
        self.check_inputs(embeddings, labels)
        dtype = similarity_dtype(embeddings, self.weight)
        bias = None if self.class_bias is None else self.class_bias.to(dtype)
        with autocast_off(embeddings.device):
            return F.linear(embeddings.to(dtype), self.weight.to(dtype), bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias}"


@register_loss("normface")
class NormFaceClassifier(ProxyClassifier):
    """NormFace: logits γ·cos(x, w_j), i.e. Eq. 2 with m=0 (Wang et al., 2017)."""

    paper_loss = "normface"
    sweepable = ("gamma",)
    arguments: ClassVar[dict[str, dict]] = {
        "gamma": {"type": "number", "exclusiveMinimum": 0, "description": "scale factor gamma"},
    }

    def __init__(self, embedding_dim: int, num_classes: int, gamma: float = 64) -> None:
        super().__init__(embedding_dim, num_classes)
        self.gamma = check_real("gamma", gamma, positive=True)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """γ·cos (N, C)."""
        self.check_inputs(embeddings, labels)
        return self.gamma * self.cosine(embeddings)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"


@register_loss("am_softmax")
class AMSoftmaxClassifier(ProxyClassifier):
    """AM-Softmax / CosFace, Eq. 2: logits γ·(cos − m·onehot(y)).

    −log( e^{γ(s_p−m)} / (e^{γ(s_p−m)} + Σ_j e^{γ s_n^j}) ); paper face setting γ=64, m=0.35.
    Any finite m is accepted (m=0 is NormFace; m<0 loosens the target).
    """

    paper_loss = "am_softmax"
    sweepable = ("gamma", "m")
    arguments: ClassVar[dict[str, dict]] = {
        "m": {"type": "number", "minimum": -1, "maximum": 1},
        "gamma": {"type": "number", "exclusiveMinimum": 0, "description": "scale factor gamma"},
    }

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.35, gamma: float = 64) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """γ·cos with m subtracted from the target cosine (N, C)."""
        self.check_inputs(embeddings, labels)
        cos = self.cosine(embeddings)
        return self.gamma * replace_target(cos, labels, target_values(cos, labels) - self.m)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, gamma={self.gamma}"


@register_loss("arcface")
class ArcFaceClassifier(ProxyClassifier):
    """ArcFace (Deng et al., CVPR 2019): target logit γ·cos(θ_y + m), others γ·cos θ_j.

    Paper face setting γ=64, m=0.5 (radians). As in insightface, cos(θ+m) is computed as
    cos θ·cos m − sin θ·sin m and only used where it keeps the target logit decreasing in θ:

    * ``easy_margin=True``: cos(θ+m) where cos θ > 0, else cos θ;
    * otherwise: cos(θ+m) where cos θ > cos(π−m) (θ < π−m), else cos θ − m·sin(π−m)
      (the "th/mm" fallback).

    sin θ = sqrt(1 − c²) with c = cos θ clamped to [−1+ε, 1−ε], ε the float eps of the
    compute dtype: d sin/d cos = −c/sin is unbounded at cos = ±1, and the clamp keeps the
    gradient finite there (the clamp passes no gradient through the sin term beyond it).
    The fallback branch is discontinuous at cos θ = cos(π−m), as in insightface.
    """

    paper_loss = "arcface"
    sweepable = ("gamma", "m")
    arguments: ClassVar[dict[str, dict]] = {
        "m": {"type": "number", "minimum": 0, "maximum": 3.14159},
        "gamma": {"type": "number", "exclusiveMinimum": 0, "description": "scale factor gamma"},
        "easy_margin": {"type": "boolean"},
    }

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 0.5,
        gamma: float = 64,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_real("m", m)
        if not 0 <= self.m < math.pi:
            raise ValueError(f"m must be in [0, π) radians, got {m!r}")
        self.gamma = check_real("gamma", gamma, positive=True)
        if not isinstance(easy_margin, bool):
            raise ValueError(f"easy_margin must be a bool, got {easy_margin!r}")
        self.easy_margin = easy_margin

    def target_cosine(self, cos: Tensor) -> Tensor:
        """The margin-modified target cosine, elementwise, of target cosines ``cos``."""
        eps = torch.finfo(cos.dtype).eps
        c = cos.clamp(-1 + eps, 1 - eps)
        sin = torch.sqrt((1 - c * c).clamp_min(0))
        phi = cos * math.cos(self.m) - sin * math.sin(self.m)
        if self.easy_margin:
            return torch.where(cos > 0, phi, cos)
        threshold = math.cos(math.pi - self.m)
        return torch.where(cos > threshold, phi, cos - math.sin(math.pi - self.m) * self.m)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """γ·cos with the target cosine replaced by :meth:`target_cosine` (N, C)."""
        self.check_inputs(embeddings, labels)
        cos = self.cosine(embeddings)
        target = self.target_cosine(target_values(cos, labels))
        return self.gamma * replace_target(cos, labels, target)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, gamma={self.gamma}, easy_margin={self.easy_margin}"
