"""A run's own checkpoints: writing them so that a kill never loses the last one, finding the newest
usable one, and reading it without running code.

A checkpoint is written under a temporary name, flushed to disk and renamed, and the newest complete
checkpoint is never deleted before the next one is in place, so a kill, a node loss or a full disk at
any moment leaves the last complete checkpoint whole. The newest checkpoint is found by the step in its
file name (``epoch_3.pth``, ``iter_2000.pth``) inside the run's own work folder, not by a stored path,
so a moved or copied run folder resumes too; an unreadable newest checkpoint (truncated, say) gives way
to the one before it.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors, numbers, strings, containers,
numeric numpy arrays and ``collections.Counter`` (the milestones of mmengine's step schedulers) only.
mmengine's ``HistoryBuffer`` pickles bound methods, so the message hub's buffers are saved as plain
arrays and rebuilt on loading. A file that asks to import anything else is refused before it is
unpickled, naming the file: a pickle planted in a run's folder never runs. The ``run-checkpoint://``
scheme reads a file only if it lies under a work folder the current process is resuming.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import pickle
import pickletools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from numpy._core.multiarray import _reconstruct, scalar

from circle_repro.engine.errors import CheckpointError

RUN_CHECKPOINT_SCHEME = "run-checkpoint://"
CHECKPOINT_NAME = re.compile(r"(?:epoch|iter)_(\d+)\.pth")
"""The file names of mmengine's checkpoint hook (``epoch_{}.pth`` / ``iter_{}.pth``); the number is the step."""
_NUMERIC_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64",
)  # fmt: skip
SAFE_GLOBALS = (
    np.ndarray, np.dtype, _reconstruct, scalar, *(type(np.dtype(name)) for name in _NUMERIC_DTYPES), collections.Counter,
)  # fmt: skip
"""What a checkpoint may hold beyond torch's ``weights_only`` defaults: numeric numpy arrays and scalars
(RNG states, logged values) and the Counter of step schedulers' milestones."""
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip format
_trusted_work_dirs: list[Path] = []
_log = logging.getLogger(__name__)


class _Unreadable(Exception):
    """A checkpoint file that cannot be read (truncated, empty, not a checkpoint): the one before it is tried."""


@contextlib.contextmanager
def trusted_work_dir(work_dir: str | Path) -> Iterator[None]:
    """Allow ``run-checkpoint://`` loading of checkpoints under ``work_dir`` (this run's own) while inside."""
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
            f"{path}: not a checkpoint of the run being resumed; refusing to load it. Load "
            "weights from elsewhere with torch.load(weights_only=True)."
        )
    _refuse_unsafe(path)
    try:
        return from_saved_layout(_load(path, map_location))
    except pickle.UnpicklingError as exc:
        raise _refusal(path, f"torch.load(weights_only=True) refused it ({_weights_only_detail(exc)})") from None


def _load(path: Path, map_location: Any = None, mmap: bool = False) -> Any:
    with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


def _refuse_unsafe(path: Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` asks to import anything beyond :data:`SAFE_GLOBALS`
    (read statically: nothing is unpickled); :class:`_Unreadable` if it cannot even be parsed."""
    with open(path, "rb") as fh:
        is_zip = fh.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    if is_zip:
        try:
            with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
                imports = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as exc:
            raise _Unreadable(f"{path.name} is unreadable ({_first_line(exc)})") from None
    else:  # torch.save never writes this: a raw pickle, or a file cut short before its zip header
        imports = _pickle_imports(path.read_bytes())
        if not imports:
            raise _Unreadable(f"{path.name} is not a PyTorch checkpoint (truncated or empty?)")
    if imports:
        raise _refusal(path, f"it asks to import {', '.join(sorted(imports))}")


def _refusal(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: refusing to load this checkpoint: {reason}, which no checkpoint of this run holds, so this "
        "run did not write it (checkpoints hold tensors, numbers, strings and numpy arrays only). Remove the "
        f"file and check who can write to {path.parent}, or delete {path.parent} to train the run from scratch."
    )


def _weights_only_detail(exc: pickle.UnpicklingError) -> str:
    """The line of torch's weights_only refusal that says what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if "Unsupported global" in line or "but got" in line]
    return (detail or lines or ["no detail"])[0]


def _pickle_imports(data: bytes) -> set[str]:
    """The ``module.name`` globals a raw pickle imports, read from its opcodes without unpickling."""
    imports, strings = set(), []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                imports.add(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":
                imports.add(".".join(strings[-2:]) or "an unnamed global")
            elif isinstance(argument, str):
                strings.append(argument)
    except Exception:  # not a (complete) pickle: what was read so far still counts
        pass
    return imports


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_readable(path: str | Path) -> None:
    """Read a checkpoint as resuming would (tensors memory-mapped): :class:`CheckpointError` for a file
    that asks to import code, :class:`_Unreadable` for one that is cut short or not a checkpoint."""
    path = Path(path)
    _refuse_unsafe(path)
    try:
        checkpoint = _load(path, map_location="cpu", mmap=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, f"torch.load(weights_only=True) refused it ({_weights_only_detail(exc)})") from None
    except Exception as exc:
        raise _Unreadable(f"{path.name} is unreadable ({_first_line(exc)})") from None
    if not (isinstance(checkpoint, dict) and {"meta", "state_dict"} <= checkpoint.keys()):
        raise _Unreadable(f"{path.name} is not an mmengine checkpoint (no meta and state_dict)")


def checkpoint_files(work_dir: str | Path) -> list[Path]:
    """The checkpoints in ``work_dir``, newest (highest step) first."""
    folder = Path(work_dir)
    if not folder.is_dir():
        return []
    return sorted((path for path in folder.iterdir() if CHECKPOINT_NAME.fullmatch(path.name)), key=_step, reverse=True)


def latest_checkpoint(work_dir: str | Path) -> str | None:
    """The ``run-checkpoint://`` address of the newest usable checkpoint in ``work_dir``; None if it has none.

    An unreadable checkpoint is skipped with a warning for the one before it. Raises
    :class:`CheckpointError` when checkpoints exist but none is usable, or one asks to import code.
    """
    skipped: list[str] = []
    for path in checkpoint_files(work_dir):
        try:
            _check_readable(path)
        except _Unreadable as exc:
            skipped.append(str(exc))
            _log.warning(f"{Path(work_dir)}: {exc}; trying the checkpoint before it")
            continue
        if skipped:
            _log.warning(f"{Path(work_dir)}: resuming from {path.name}, the newest usable checkpoint")
        return RUN_CHECKPOINT_SCHEME + str(path.resolve())
    if skipped:
        raise CheckpointError(
            f"{Path(work_dir)}: no usable checkpoint to resume from: {'; '.join(skipped)}. Put back a complete "
            f"checkpoint, or delete {Path(work_dir)} to train the run from scratch."
        )
    return None


def partial_name(name: str) -> str:
    """The temporary name a checkpoint is written under before :func:`publish_checkpoint` renames it."""
    return f".{name}.partial"


def publish_checkpoint(work_dir: str | Path, name: str) -> Path:
    """Flush the checkpoint written as :func:`partial_name` ``(name)`` to disk and rename it to ``name``."""
    folder = Path(work_dir)
    _fsync(folder / partial_name(name))
    os.replace(folder / partial_name(name), folder / name)
    _fsync(folder)
    return folder / name


def prune_checkpoints(work_dir: str | Path, step: int, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints before ``step`` (later ones are left alone)."""
    older = [path for path in checkpoint_files(work_dir) if _step(path) < step]
    for stale in older[keep:]:
        stale.unlink(missing_ok=True)


def _step(path: Path) -> int:
    return int(CHECKPOINT_NAME.fullmatch(path.name)[1])  # type: ignore[index]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def to_saved_layout(checkpoint: dict[str, Any]) -> None:
    """Replace the message hub's HistoryBuffers of a checkpoint about to be saved by plain arrays."""
    scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
    for name, buffer in scalars.items():
        if isinstance(buffer, HistoryBuffer):
            log, count = buffer.data
            scalars[name] = {"log_history": log, "count_history": count, "max_length": buffer.max_length}


def from_saved_layout(checkpoint: Any) -> Any:
    """Rebuild the message hub's HistoryBuffers of a loaded checkpoint (the inverse of :func:`to_saved_layout`)."""
    scalars = checkpoint.get("message_hub", {}).get("log_scalars", {}) if isinstance(checkpoint, dict) else {}
    for name, saved in scalars.items():
        if isinstance(saved, dict):
            scalars[name] = HistoryBuffer(**saved)
    return checkpoint


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
    gathered: dict[str, Any] = {
        "state_dict": {key: head.gather_rows(state[key]).cpu() for key, (head, _) in sharded.items()}
    }
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


def shard_checkpoint(
    checkpoint: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
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
