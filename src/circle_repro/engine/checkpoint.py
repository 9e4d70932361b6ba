"""Resuming a run from its own checkpoints.

mmengine checkpoints hold optimizer state, numpy arrays and mmengine's HistoryBuffer, which
``torch.load(weights_only=True)`` refuses. Rather than lowering that guard process-wide, the
run's own checkpoints are read through a dedicated ``run-checkpoint://`` scheme that unpickles a
file only if it lies under a work folder the current process is resuming. Pretrained weights and
user-supplied model files keep going through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from mmengine.runner import CheckpointLoader

RUN_CHECKPOINT_SCHEME = "run-checkpoint://"
_trusted_work_dirs: list[Path] = []


@contextlib.contextmanager
def trusted_work_dir(work_dir: str | Path) -> Iterator[None]:
    """Allow full unpickling of checkpoints under ``work_dir`` (this run's own) while inside."""
    root = Path(work_dir).resolve()
    _trusted_work_dirs.append(root)
    try:
        yield
    finally:
        _trusted_work_dirs.remove(root)


@CheckpointLoader.register_scheme(prefixes=RUN_CHECKPOINT_SCHEME)
def load_run_checkpoint(filename: str, map_location: Any = None) -> Any:
    """Load one of the resuming run's own checkpoints; refuse any file outside its work folder."""
    path = Path(filename.removeprefix(RUN_CHECKPOINT_SCHEME)).resolve()
    if not any(path.is_relative_to(root) for root in _trusted_work_dirs):
        raise PermissionError(
            f"{path}: not a checkpoint of the run being resumed; refusing to unpickle it. Load "
            "weights from elsewhere with torch.load(weights_only=True)."
        )
    return torch.load(path, map_location=map_location, weights_only=False)


def latest_checkpoint(work_dir: str | Path) -> str | None:
    """The ``run-checkpoint://`` address of the newest complete checkpoint in ``work_dir``, if any."""
    pointer = Path(work_dir) / "last_checkpoint"  # written by mmengine's CheckpointHook after each save
    if not pointer.is_file():
        return None
    path = Path(pointer.read_text().strip())
    if not path.is_absolute():
        path = Path(work_dir) / path.name
    return RUN_CHECKPOINT_SCHEME + str(path.resolve()) if path.is_file() else None


# -- Full (unsharded) state of models with sharded class-level heads -------------------------
#
# A sharded head (circle_repro.losses.partial_fc) holds a different slice of the proxies on
# every rank, and only rank 0 writes checkpoints. So that a checkpoint (and model.pth) is the
# complete model, whatever the world size, the proxy shards and their optimizer state are
# gathered from all ranks before rank 0 saves, and each rank cuts its own rows out of them on
# resume (which also lets a run resume on a different number of ranks). Without a process
# group all of this is a no-op.


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def _sharded(model: torch.nn.Module) -> dict[str, tuple[Any, str]]:
    from circle_repro.losses.partial_fc import full_state_names

    return full_state_names(unwrap_model(model))


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every sharded head's proxies gathered over all classes.

    A collective when a sharded head runs on several ranks: every rank must call it (every rank
    gets the full state).
    """
    model = unwrap_model(model)
    state = model.state_dict()
    for key, (head, _) in _sharded(model).items():
        state[key] = head.gather_rows(state[key])
    return state


def _optimizer_indices(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[int, tuple[Any, str]]:
    """Index in ``optimizer.state_dict()["state"]`` -> (sharded head, parameter name) of each shard."""
    by_id = {id(getattr(head.head, name)): (head, name) for head, name in _sharded(model).values()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {index: by_id[id(p)] for index, p in enumerate(params) if id(p) in by_id}


def gather_sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """The full proxies of every sharded head and their full per-parameter optimizer state
    (a collective, as :func:`full_model_state`); empty without sharded heads on several ranks."""
    sharded = _sharded(model)
    if not any(head.world_size > 1 for head, _ in sharded.values()):
        return {}
    state = unwrap_model(model).state_dict()
    gathered: dict[str, Any] = {"state_dict": {key: head.gather_rows(state[key]).cpu() for key, (head, _) in sharded.items()}}
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    if optimizer is not None:
        for index, (head, name) in sorted(_optimizer_indices(optimizer, model).items()):
            param = getattr(head.head, name)
            per_param = optimizer.state.get(param, {})
            optimizer_state[index] = {
                key: head.gather_rows(value).cpu()
                for key, value in sorted(per_param.items())
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.dim() >= 1
            }
    gathered["optimizer"] = optimizer_state
    return gathered


def insert_full_state(checkpoint: dict[str, Any], gathered: dict[str, Any]) -> None:
    """Put :func:`gather_sharded_state`'s tensors into a checkpoint about to be saved."""
    if not gathered:
        return
    checkpoint["state_dict"].update(gathered["state_dict"])
    optimizer_state = checkpoint.get("optimizer", {}).get("state", {})
    for index, tensors in gathered["optimizer"].items():
        if index in optimizer_state:  # a new dict: the saved one may be the optimizer's live state
            optimizer_state[index] = {**optimizer_state[index], **tensors}


def shard_checkpoint(checkpoint: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Replace the full proxies (and their optimizer state) of a loaded checkpoint by this rank's rows."""
    sharded = _sharded(model)
    state_dict = checkpoint.get("state_dict", {})
    for key, (head, name) in sharded.items():
        for candidate in (key, f"module.{key}"):
            if candidate in state_dict and head.world_size > 1 and head.is_full(name, state_dict[candidate]):
                state_dict[candidate] = head.local_rows(state_dict[candidate])
    if optimizer is None or "optimizer" not in checkpoint:
        return
    optimizer_state = checkpoint["optimizer"].get("state", {})
    for index, (head, name) in _optimizer_indices(optimizer, model).items():
        if head.world_size == 1:
            continue
        if index in optimizer_state:
            optimizer_state[index] = {
                key: head.local_rows(value)
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and head.is_full(name, value)
                else value
                for key, value in optimizer_state[index].items()
            }
