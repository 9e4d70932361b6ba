"""The mmengine model: backbone -> features -> loss (on unit vectors, or raw features for the heads that ask)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch.nn.parallel import DistributedDataParallel

from circle_repro.losses import build_loss
from circle_repro.losses.pair_utils import autocast_off, similarity_dtype
from circle_repro.losses.proxy import is_class_level
from circle_repro.models import build_backbone


@MODELS.register_module()
class EmbeddingModel(BaseModel):
    """Maps images to unit-norm embeddings; in ``loss`` mode also returns batch s_p / s_n means.

    A class-level loss (a proxy head) gets ``embedding_dim`` and ``num_classes`` (the training
    classes); a pair-wise loss ignores ``num_classes``. The loss sees the backbone's features as
    unit vectors, unless it declares ``takes_unit_embeddings = False`` (plain Softmax: inner
    products W x + b on the raw features, Sun et al. §2); evaluation always uses unit vectors.

    ``backbone`` and ``image_size`` (re-ID input [height, width], or None for the data set's own)
    are kept as ``backbone_name`` and ``image_size``: they pick the input transform
    (:func:`circle_repro.data.transforms.build_transform`) of training and evaluation alike.

    ``pretrained`` is a local weights file (or folder) for the backbone, passed to it as its
    ``weights`` argument; ``backbone_options`` are the backbone's other keyword arguments
    (``width``, ``last_stride``, ``bnneck``, ``input_size``, ``dropout``, ... as each backbone
    takes them; an option it does not take is an error naming the ones it does).

    ``data_preprocessor`` (mmengine's) brings a training batch to the model's device and input format
    (:class:`~circle_repro.engine.batch_transfer.ImageBatchPreprocessor` in training).

    Rank-local state (the proxy shards of a sharded class-level head) is registered with DDP as
    "ignored": DDP neither broadcasts it from rank 0 nor averages its gradients.
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        embedding_dim: int,
        num_classes: int,
        loss: dict[str, Any],
        pretrained: str | None = None,
        backbone_options: dict[str, Any] | None = None,
        image_size: list[int] | None = None,
        data_preprocessor: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.backbone_name = backbone
        self.image_size = None if image_size is None else list(image_size)
        options = dict(backbone_options or {})
        if pretrained is not None:
            options["weights"] = pretrained
        self.backbone = build_backbone(backbone, in_channels=in_channels, embedding_dim=embedding_dim, **options)
        if is_class_level(loss):
            loss = {**loss, "embedding_dim": embedding_dim, "num_classes": num_classes}
        self.loss = build_loss(loss)
        rank_local = [f"loss.{name}" for name in getattr(self.loss, "rank_local_state_names", list)()]
        if rank_local:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, rank_local)

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The backbone's features of a batch of images, not normalised, in float32 (float64 for a
        float64 model) also under autocast."""
        features = self.backbone(inputs)
        return features.to(similarity_dtype(features))

    @staticmethod
    def _unit(features: torch.Tensor) -> torch.Tensor:
        with autocast_off(features.device):
            return F.normalize(features, dim=1)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of a batch of images (normalised in float32, or float64 for a
        float64 model, also under autocast)."""
        return self._unit(self.features(inputs))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, mode: str = "tensor") -> Any:
        if mode == "loss":
            if labels is None:
                raise ValueError("EmbeddingModel in 'loss' mode needs labels")
            features = self.features(inputs)
            embeddings = self._unit(features)
            loss_input = embeddings if self.loss.takes_unit_embeddings else features
            return {"loss": self.loss(loss_input, labels), **_batch_similarity_means(embeddings.detach(), labels)}
        if mode in ("tensor", "predict"):
            return self.embed(inputs)
        raise ValueError(f"unknown mode {mode!r}; allowed: 'loss', 'predict', 'tensor'")


def _batch_similarity_means(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean within-class (s_p) and between-class (s_n) cosine similarity of a batch, self pairs excluded."""
    with autocast_off(embeddings.device):
        similarity = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & not_self, ~same
    nan = similarity.new_tensor(float("nan"))
    return {
        "s_p": similarity[positives].mean() if positives.any() else nan,
        "s_n": similarity[negatives].mean() if negatives.any() else nan,
    }
