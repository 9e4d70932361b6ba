"""EmbeddingModel: which features each loss sees, and the input settings it carries to the transforms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from circle_repro.config import find_run, train_config
from circle_repro.engine import evaluate as evaluate_module
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.runner_config import model_config, runner_config
from circle_repro.losses import LOSSES
from support import tiny_params

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def _model(loss: dict) -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel("small_cnn", in_channels=1, embedding_dim=8, num_classes=3, loss=loss)


def _loss_input(model: EmbeddingModel, images: torch.Tensor) -> torch.Tensor:
    seen = []
    model.loss.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model(images, LABELS, mode="loss")
    return seen[0]


@pytest.mark.parametrize("loss", [{"type": name} for name in sorted(LOSSES)] + [{"type": "softmax", "sharded": True}])
def test_softmax_gets_the_raw_features_and_every_other_loss_unit_vectors(loss):
    model = _model(loss)
    images = torch.randn(6, 1, 28, 28)
    seen = _loss_input(model, images)
    with torch.no_grad():
        features = model.backbone(images)
    if loss["type"] == "softmax":
        assert torch.allclose(seen, features) and not torch.allclose(seen.norm(dim=1), torch.ones(6))
    else:
        assert torch.allclose(seen, F.normalize(features, dim=1))


def test_softmax_loss_is_cross_entropy_of_inner_products_with_the_raw_features():
    model = _model({"type": "softmax"})
    images = torch.randn(6, 1, 28, 28)
    loss = model(images, LABELS, mode="loss")["loss"]
    with torch.no_grad():
        features = model.backbone(images)
        expected = F.cross_entropy(features @ model.loss.weight.T + model.loss.class_bias, LABELS)
    assert torch.allclose(loss, expected)


def test_evaluation_and_batch_statistics_use_unit_vectors_also_for_softmax():
    model = _model({"type": "softmax"})
    images = torch.randn(6, 1, 28, 28)
    assert torch.allclose(model(images, mode="tensor").norm(dim=1), torch.ones(6))
    stats = model(images, LABELS, mode="loss")
    unit = model.embed(images).detach()
    same = (LABELS[:, None] == LABELS[None, :]) & ~torch.eye(6, dtype=torch.bool)
    assert torch.allclose(stats["s_p"], (unit @ unit.T)[same].mean())


def test_image_size_reaches_the_model_and_both_transforms(repo_params, prepared_mnist5k, tmp_path, monkeypatch):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    config["model"] = {**config["model"], "image_size": [32, 16]}
    built = model_config(config, 5)
    assert built["image_size"] == [32, 16] and "backbone_options" not in built
    runner = runner_config(config, prepared_mnist5k, tmp_path, "sqlite:///x.db", 5, {}, per_epoch=3)
    dataset, preprocessor = runner.train_dataloader.dataset, runner.data_preprocessor
    assert (dataset.backbone, dataset.image_size) == ("small_cnn", [32, 16])
    assert (preprocessor.backbone, preprocessor.image_size) == ("small_cnn", [32, 16])
    model = EmbeddingModel(**{k: v for k, v in built.items() if k != "type"})
    calls = []
    original = evaluate_module.build_pixel_transform

    def recording(*args, **kwargs):  # mnist has no image_size: record the call, build the plain pipeline
        calls.append((args, kwargs))
        return original("mnist", train=False)

    monkeypatch.setattr(evaluate_module, "build_pixel_transform", recording)
    evaluate_module.model_embedder(model, tmp_path, "mnist")
    assert calls == [(("mnist",), {"train": False, "backbone": "small_cnn", "image_size": [32, 16]})]
