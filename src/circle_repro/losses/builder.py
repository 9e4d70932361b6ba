"""Build a loss from a config mapping, wrapping a sharded class-level head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from circle_repro.losses.partial_fc import ShardedClassifier
from circle_repro.losses.proxy import ProxyClassifier
from circle_repro.losses.registry import _REGISTRY, check_arguments, construct, loss_class

SHARDING_KEYS = ("sharded", "sample_rate", "seed")
"""Config keys of the model-parallel wrapper (:mod:`circle_repro.losses.partial_fc`), not of the head."""


def build_loss(cfg: Mapping[str, Any]) -> nn.Module:
    """Build the loss named by ``cfg["type"]``; the other keys are constructor arguments.

    A class-level head with ``sharded: true`` is built as a
    :class:`~circle_repro.losses.partial_fc.ShardedClassifier` around that head; ``sample_rate``
    (fraction of classes per step) and ``seed`` (of that sampling) then belong to the wrapper.
    """
    kwargs = dict(cfg)
    if "type" not in kwargs:
        raise ValueError(f"loss config needs a 'type' key; allowed types: {', '.join(sorted(_REGISTRY))}")
    loss_type = kwargs.pop("type")
    cls = loss_class(loss_type)
    sharded = kwargs.pop("sharded", False)
    if not isinstance(sharded, bool):
        raise ValueError(f"invalid arguments for loss {loss_type!r}: sharded must be a bool, got {sharded!r}")
    wrapper_keys = [key for key in SHARDING_KEYS[1:] if key in kwargs]
    if not sharded:
        if wrapper_keys:
            raise ValueError(f"invalid arguments for loss {loss_type!r}: {wrapper_keys} need sharded: true")
        return construct(loss_type, kwargs)
    if not issubclass(cls, ProxyClassifier):
        raise ValueError(f"invalid arguments for loss {loss_type!r}: sharded: true needs a class-level head")
    wrapper = {key: kwargs.pop(key) for key in wrapper_keys}
    check_arguments(loss_type, kwargs)
    return ShardedClassifier(loss_type, **wrapper, **kwargs)
