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
