"""Helpers shared by the tests (import as `from support import ...`)."""

from __future__ import annotations

import copy
from pathlib import Path
from collections.abc import Callable
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_params(params: dict[str, Any], epochs: int = 1, max_images: int | None = 400) -> dict[str, Any]:
    """The committed params cut down to one seed, ``epochs`` epochs (2 iterations for an
    iteration-based recipe) and a training subset."""
    tiny = copy.deepcopy(params)
    for experiment in tiny["experiments"].values():
        experiment["seeds"] = experiment["seeds"][:1]
        train = experiment["train"]
        if "iterations" in train:
            train["iterations"] = 2
            train.pop("checkpoint_interval", None)
        else:
            train["epochs"] = epochs
        train["max_images"] = max_images
    return tiny


def spawn_ranks(worker: Callable[[int, str, str], None], folder: Path, world_size: int) -> list[dict]:
    """Run ``worker(rank, init_file, out_dir)`` in ``world_size`` processes; return what each saved as
    ``out_dir/rank<r>.pt`` (a dict), in rank order."""
    import torch
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(str(folder / "init"), str(folder)), nprocs=world_size, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]
