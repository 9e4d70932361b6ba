"""The loss registry and the config builder."""

from __future__ import annotations

import inspect

import pytest
from torch import nn

from circle_repro.losses import (
    LOSSES,
    CircleClassifier,
    CircleLoss,
    TripletMarginLoss,
    build_loss,
    register_loss,
    registry,
)
from circle_repro.losses.proxy import ProxyClassifier

# Constructor arguments without a default, per loss: class-level heads need their dimensions.
REQUIRED_ARGS = {
    name: {"embedding_dim": 8, "num_classes": 3} for name, cls in LOSSES.items() if issubclass(cls, ProxyClassifier)
}


def test_importing_the_package_registers_every_loss():
    assert LOSSES["circle"] is CircleLoss
    assert LOSSES["circle_classifier"] is CircleClassifier
    assert LOSSES["triplet"] is TripletMarginLoss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_builds_with_defaults(name):
    required = REQUIRED_ARGS.get(name, {})
    loss = build_loss({"type": name, **required})
    assert type(loss) is LOSSES[name]
    for param in inspect.signature(LOSSES[name]).parameters.values():
        if param.default is not inspect.Parameter.empty:
            assert getattr(loss, param.name) == param.default


def test_build_passes_kwargs():
    loss = build_loss({"type": "circle", "m": 0.4, "gamma": 80})
    assert (loss.m, loss.gamma) == (0.4, 80)


def test_unknown_type_lists_allowed_names_sorted():
    with pytest.raises(ValueError) as err:
        build_loss({"type": "cirle"})
    assert "'cirle'" in str(err.value)
    assert ", ".join(sorted(LOSSES)) in str(err.value)


def test_missing_type_is_a_value_error():
    with pytest.raises(ValueError, match="type"):
        build_loss({"m": 0.25})


@pytest.mark.parametrize(
    ("cfg", "argument"),
    [
        ({"type": "circle", "margin": 0.1}, "margin"),
        ({"type": "triplet", "gamma": 80}, "gamma"),
        ({"type": "circle_classifier", "num_classes": 3}, "embedding_dim"),
    ],
)
def test_bad_kwargs_name_the_loss_and_the_argument(cfg, argument):
    with pytest.raises(ValueError) as err:
        build_loss(cfg)
    assert repr(cfg["type"]) in str(err.value)
    assert argument in str(err.value)


def test_bad_values_are_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="gamma"):
        build_loss({"type": "circle", "gamma": -1})


def test_registry_view_is_read_only():
    with pytest.raises(TypeError):
        LOSSES["mine"] = CircleLoss  # type: ignore[index]


def test_register_loss_adds_and_refuses_a_taken_name():
    class Dummy(nn.Module):
        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

    try:
        assert register_loss("dummy_for_test")(Dummy) is Dummy
        assert build_loss({"type": "dummy_for_test", "scale": 2.0}).scale == 2.0
        with pytest.raises(ValueError, match="circle"):
            register_loss("circle")(Dummy)
    finally:
        registry._REGISTRY.pop("dummy_for_test", None)
    assert "dummy_for_test" not in LOSSES
