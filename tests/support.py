"""Helpers shared by the tests (import as `from support import ...`)."""

from __future__ import annotations

import copy
from pathlib import Path
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
