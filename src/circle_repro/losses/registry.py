"""Name → class registry of the losses (a leaf: it imports no other loss module)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

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
        raise ValueError(f"unknown loss type {loss_type!r}; allowed types: {', '.join(sorted(_REGISTRY))}")
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
