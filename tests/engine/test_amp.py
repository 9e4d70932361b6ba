"""Mixed precision on the CPU: fp32 losses under autocast, bf16 / fp16 optimiser steps (loss
scaling for fp16), and the NaN guard naming the iteration under AMP."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.registry import MODELS, OPTIM_WRAPPERS

from circle_repro.config import find_run, train_config
from circle_repro.engine import train as train_module  # noqa: F401  (registers everything)
from circle_repro.engine.optim import AMP_DTYPES, MixedPrecisionOptimWrapper, optim_wrapper_config
from circle_repro.engine.runner_config import model_config
from circle_repro.engine.train import train_run
from circle_repro.losses import LOSSES, CircleLoss, build_loss
from circle_repro.losses.proxy import ProxyClassifier
from support import tiny_params

AUTOCAST = [torch.bfloat16, torch.float16]


def _loss_configs():
    configs = []
    for name, cls in sorted(LOSSES.items()):
        if issubclass(cls, ProxyClassifier):
            configs.append(pytest.param({"type": name, "embedding_dim": 16, "num_classes": 6}, id=name))
            configs.append(
                pytest.param(
                    {"type": name, "embedding_dim": 16, "num_classes": 6, "sharded": True, "sample_rate": 0.5},
                    id=f"{name}-sharded",
                )
            )
        else:
            configs.append(pytest.param({"type": name}, id=name))
    return configs


@pytest.mark.parametrize("dtype", AUTOCAST, ids=str)
@pytest.mark.parametrize("config", _loss_configs())
def test_every_loss_is_float32_under_autocast(config, dtype):
    torch.manual_seed(0)
    loss_fn = build_loss(config).train()
    layer = torch.nn.Linear(8, 16)
    x = torch.randn(12, 8)
    labels = torch.arange(12) % 6
    with torch.autocast("cpu", dtype=dtype):
        embeddings = layer(x)
        assert embeddings.dtype == dtype  # the forward really runs in low precision
        loss = loss_fn(embeddings, labels)
        if isinstance(loss_fn, ProxyClassifier):
            assert loss_fn.logits(embeddings, labels).dtype == torch.float32
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


def _model(loss):
    torch.manual_seed(0)
    return MODELS.build(
        dict(type="EmbeddingModel", backbone="small_cnn", in_channels=1, embedding_dim=16, num_classes=4, loss=loss)
    )


def _batch():
    gen = torch.Generator().manual_seed(0)
    return {"inputs": torch.randn(8, 1, 28, 28, generator=gen), "labels": torch.arange(8) % 4}


@pytest.mark.parametrize(
    "loss", [{"type": "circle_classifier", "m": 0.25, "gamma": 64}, {"type": "softmax"}], ids=lambda loss: loss["type"]
)
@pytest.mark.parametrize("dtype", AUTOCAST, ids=str)
def test_model_loss_and_statistics_are_float32_under_autocast(dtype, loss):
    model = _model(loss)
    with torch.autocast("cpu", dtype=dtype):
        out = model(**_batch(), mode="loss")
        embeddings = model(_batch()["inputs"])
    assert {value.dtype for value in out.values()} == {torch.float32}
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(8))


def _wrapper(amp, model, **extra):
    train = {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}, "amp": amp, **extra}
    return OPTIM_WRAPPERS.build(
        {**optim_wrapper_config(train), "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}
    )


def test_optim_wrapper_config():
    base = {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True}}
    assert optim_wrapper_config(base) == {"type": "OptimWrapper", "optimizer": base["optimizer"]}
    assert optim_wrapper_config({**base, "amp": "none"})["type"] == "OptimWrapper"
    bf16 = optim_wrapper_config({**base, "amp": "bf16", "grad_clip": {"max_norm": 5}})
    assert bf16 == {
        "type": "MixedPrecisionOptimWrapper",
        "dtype": "bfloat16",
        "optimizer": base["optimizer"],
        "clip_grad": {"max_norm": 5.0, "norm_type": 2},
    }
    assert optim_wrapper_config({**base, "amp": "fp16"})["dtype"] == "float16"
    with pytest.raises(ValueError, match="amp"):
        optim_wrapper_config({**base, "amp": "fp8"})
    assert set(AMP_DTYPES) == {"none", "bf16", "fp16"}


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_a_training_step_on_the_cpu(amp, monkeypatch):
    model = _model({"type": "circle", "m": 0.25, "gamma": 64})
    wrapper = _wrapper(amp, model, grad_clip={"max_norm": 10.0})
    assert isinstance(wrapper, MixedPrecisionOptimWrapper) and wrapper.device_type == "cpu"
    assert (wrapper.loss_scaler is not None) == (amp == "fp16")
    calls = []
    if wrapper.loss_scaler is not None:
        for method in ("scale", "unscale_", "step", "update"):
            original = getattr(wrapper.loss_scaler, method)
            monkeypatch.setattr(
                wrapper.loss_scaler, method, lambda *a, _m=method, _o=original, **k: (calls.append(_m), _o(*a, **k))[1]
            )
    seen = {}

    def forward_dtype(module, args, output):
        seen["dtype"] = output.dtype

    model.backbone.embedding.register_forward_hook(forward_dtype)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    log_vars = model.train_step(_batch(), optim_wrapper=wrapper)
    assert seen["dtype"] == AMP_DTYPES[amp], "the backbone ran under autocast"
    assert math.isfinite(float(log_vars["loss"].detach())) and log_vars["loss"].dtype == torch.float32
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert "backbone.embedding.weight" in changed and len(changed) == len(before)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if amp == "fp16":
        assert calls == ["scale", "unscale_", "step", "update"]
        assert wrapper.loss_scaler.get_scale() == 2.0**16, "a good step keeps the scale"
        assert "loss_scaler" in wrapper.state_dict()


def test_fp16_overflow_skips_the_step_and_lowers_the_scale():
    model = _model({"type": "circle", "m": 0.25, "gamma": 64})
    wrapper = _wrapper("fp16", model)
    wrapper.loss_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # fp16 gradients overflow
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train_step(_batch(), optim_wrapper=wrapper)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters()), "the step was skipped"
    assert wrapper.loss_scaler.get_scale() == 2.0**99


def test_loss_scaler_state_round_trips():
    model = _model({"type": "circle"})
    wrapper = _wrapper("fp16", model)
    model.train_step(_batch(), optim_wrapper=wrapper)
    state = wrapper.state_dict()
    state["loss_scaler"]["scale"] = 1024.0
    fresh = _wrapper("fp16", model)
    fresh.load_state_dict(state)
    assert fresh.loss_scaler.get_scale() == 1024.0
    assert fresh.optimizer.state_dict()["state"].keys() == wrapper.optimizer.state_dict()["state"].keys()


def test_the_wrapper_refuses_full_precision_dtypes():
    model = _model({"type": "circle"})
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        MixedPrecisionOptimWrapper(dtype="float32", optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize(
    ("amp", "dtype_name"),
    [("bf16", "bfloat16"), pytest.param("fp16", "float16", marks=pytest.mark.slow)],  # fp16 convs are slow on CPU
)
def test_non_finite_loss_under_amp_names_the_iteration_and_the_tensor(
    amp, dtype_name, tmp_path, repo_params, prepared_mnist5k, monkeypatch
):
    params = tiny_params(repo_params, epochs=1, max_images=300)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    config["train"]["amp"] = amp
    calls = []
    original = CircleLoss.forward

    def diverging(self, *args, **kwargs):
        calls.append(1)
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(CircleLoss, "forward", diverging)
    message = rf"iteration 3 \(epoch 1\) gave loss = nan under {dtype_name} autocast"
    with pytest.raises(FloatingPointError, match=message):
        train_run(config, prepared_mnist5k, tmp_path, f"sqlite:///{tmp_path / 'm.db'}")


def test_model_config_is_unchanged_by_amp(repo_params):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    amp = {**config, "train": {**config["train"], "amp": "bf16"}}
    assert model_config(config, 5) == model_config(amp, 5)
