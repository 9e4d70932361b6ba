"""Name → class registry of the losses (a leaf: it imports no other loss module)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

from circle_repro.names import unknown_name

_LossT = TypeVar("_LossT", bound=type[nn.Module])

_REGISTRY: dict[str, type[nn.Module]] = {}

LOSSES: Mapping[str, type[nn.Module]] = MappingProxyType(_REGISTRY)
"""Read-only view of the registered losses, by name."""


def register_loss(name: str) -> Callable[[_LossT], _LossT]:
    """Class decorator that registers a loss under ``name``."""

    def decorator(cls: _LossT) -> _LossT:
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"loss name {name!r} is already registered to {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        return cls

    return decorator


def loss_class(loss_type: Any) -> type[nn.Module]:
    """The class registered under ``loss_type``; ValueError listing the registered names otherwise."""
    cls = _REGISTRY.get(loss_type) if isinstance(loss_type, str) else None
    if cls is None:
        raise ValueError(unknown_name("loss type", loss_type, _REGISTRY))
    return cls


def check_arguments(loss_type: str, kwargs: Mapping[str, Any]) -> None:
    """ValueError naming the loss and the argument when ``kwargs`` do not fit its constructor."""
    try:
        inspect.signature(loss_class(loss_type)).bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid arguments for loss {loss_type!r}: {exc}") from None


def construct(loss_type: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """The registered loss ``loss_type`` built with ``kwargs`` (checked against its constructor first)."""
    check_arguments(loss_type, kwargs)
    return loss_class(loss_type)(**kwargs)


# --- What each loss class declares once ----------------------------------------------------------
# ``paper_loss``: its loss id in report/paper_targets.yaml (default: its registered name);
# ``sweepable``: the parameters a Fig. 3 sweep may vary (default: none);
# ``arguments``: the JSON schema of each params.yaml argument, merged along its base classes;
# ``dependent_required``: arguments that need another one. Defaults are the constructor's.


def declared_parameters(cls: type) -> dict[str, dict[str, Any]]:
    """The params.yaml arguments a loss class declares, its base classes' first."""
    merged: dict[str, dict[str, Any]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("arguments", {}))
    return merged


def loss_schema() -> dict[str, Any]:
    """The JSON schema of one params.yaml loss entry, from the registered classes' declarations."""
    branches = []
    for name, cls in sorted(_REGISTRY.items()):
        then: dict[str, Any] = {
            "additionalProperties": False,
            "properties": {"type": True, **declared_parameters(cls)},
        }
        if getattr(cls, "dependent_required", None):
            then["dependentRequired"] = dict(cls.dependent_required)
        branches.append({"if": {"properties": {"type": {"const": name}}}, "then": then})
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(_REGISTRY)}},
        "allOf": branches,
    }


def loss_defaults(loss_type: str) -> dict[str, Any]:
    """The constructor defaults of a registered loss, by argument name."""
    parameters = inspect.signature(loss_class(loss_type)).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def paper_loss_id(loss_type: str) -> str:
    """The paper's loss id of a params.yaml loss ``type`` (both Circle forms are ``circle``)."""
    return getattr(loss_class(loss_type), "paper_loss", loss_type)


def sweepable_parameters(loss_type: str) -> tuple[str, ...]:
    """The parameters of a loss a sweep may vary (none for a loss that declares none)."""
    return tuple(getattr(loss_class(loss_type), "sweepable", ()))
