"""Name → class registry of the losses, and a builder from config mappings."""

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


def build_loss(cfg: Mapping[str, Any]) -> nn.Module:
    """Build the loss named by ``cfg["type"]``; the other keys are constructor arguments."""
    kwargs = dict(cfg)
    allowed = ", ".join(sorted(_REGISTRY))
    if "type" not in kwargs:
        raise ValueError(f"loss config needs a 'type' key; allowed types: {allowed}")
    loss_type = kwargs.pop("type")
    cls = _REGISTRY.get(loss_type) if isinstance(loss_type, str) else None
    if cls is None:
        raise ValueError(f"unknown loss type {loss_type!r}; allowed types: {allowed}")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid arguments for loss {loss_type!r}: {exc}") from None
    return cls(**kwargs)
