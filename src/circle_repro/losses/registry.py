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


SHARDING_KEYS = ("sharded", "sample_rate", "seed")
"""Config keys of the model-parallel wrapper (:mod:`circle_repro.losses.partial_fc`), not of the head."""


def build_loss(cfg: Mapping[str, Any]) -> nn.Module:
    """Build the loss named by ``cfg["type"]``; the other keys are constructor arguments.

    A class-level head with ``sharded: true`` is built as a
    :class:`~circle_repro.losses.partial_fc.ShardedClassifier` around that head; ``sample_rate``
    (fraction of classes per step) and ``seed`` (of that sampling) then belong to the wrapper.
    """
    kwargs = dict(cfg)
    allowed = ", ".join(sorted(_REGISTRY))
    if "type" not in kwargs:
        raise ValueError(f"loss config needs a 'type' key; allowed types: {allowed}")
    loss_type = kwargs.pop("type")
    cls = _REGISTRY.get(loss_type) if isinstance(loss_type, str) else None
    if cls is None:
        raise ValueError(f"unknown loss type {loss_type!r}; allowed types: {allowed}")
    sharded = kwargs.pop("sharded", False)
    if not isinstance(sharded, bool):
        raise ValueError(f"invalid arguments for loss {loss_type!r}: sharded must be a bool, got {sharded!r}")
    wrapper_keys = [key for key in SHARDING_KEYS[1:] if key in kwargs]
    if sharded:
        from circle_repro.losses.partial_fc import ShardedClassifier
        from circle_repro.losses.proxy import ProxyClassifier

        if not issubclass(cls, ProxyClassifier):
            raise ValueError(f"invalid arguments for loss {loss_type!r}: sharded: true needs a class-level head")
        wrapper = {key: kwargs.pop(key) for key in wrapper_keys}
        try:
            inspect.signature(cls).bind(**kwargs)
        except TypeError as exc:
            raise ValueError(f"invalid arguments for loss {loss_type!r}: {exc}") from None
        return ShardedClassifier(loss_type, **wrapper, **kwargs)
    if wrapper_keys:
        raise ValueError(f"invalid arguments for loss {loss_type!r}: {wrapper_keys} need sharded: true")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid arguments for loss {loss_type!r}: {exc}") from None
    return cls(**kwargs)
