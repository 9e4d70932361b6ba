"""The mmengine model: backbone -> L2-normalised embedding -> loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from circle_repro.losses import build_loss
from circle_repro.losses.proxy import is_class_level
from circle_repro.models import build_backbone


@MODELS.register_module()
class EmbeddingModel(BaseModel):
    """Maps images to unit-norm embeddings; in ``loss`` mode also returns batch s_p / s_n means.

    A class-level loss (a proxy head) gets ``embedding_dim`` and ``num_classes`` (the training
    classes); a pair-wise loss ignores ``num_classes``.
    """

    def __init__(
        self, backbone: str, in_channels: int, embedding_dim: int, num_classes: int, loss: dict[str, Any]
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, in_channels=in_channels, embedding_dim=embedding_dim)
        if is_class_level(loss):
            loss = {**loss, "embedding_dim": embedding_dim, "num_classes": num_classes}
        self.loss = build_loss(loss)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of a batch of images."""
        return F.normalize(self.backbone(inputs), dim=1)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, mode: str = "tensor") -> Any:
        embeddings = self.embed(inputs)
        if mode == "loss":
            if labels is None:
                raise ValueError("EmbeddingModel in 'loss' mode needs labels")
            return {"loss": self.loss(embeddings, labels), **_batch_similarity_means(embeddings.detach(), labels)}
        if mode in ("tensor", "predict"):
            return embeddings
        raise ValueError(f"unknown mode {mode!r}; allowed: 'loss', 'predict', 'tensor'")


def _batch_similarity_means(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean within-class (s_p) and between-class (s_n) cosine similarity of a batch, self pairs excluded."""
    similarity = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & not_self, ~same
    nan = similarity.new_tensor(float("nan"))
    return {
        "s_p": similarity[positives].mean() if positives.any() else nan,
        "s_n": similarity[negatives].mean() if negatives.any() else nan,
    }
