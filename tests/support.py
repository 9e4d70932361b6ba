"""Helpers shared by the tests (import as `from support import ...`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_params(params: dict[str, Any], epochs: int = 1, max_images: int | None = 400) -> dict[str, Any]:
    """The committed params cut down to one seed, one epoch and a training subset."""
    tiny = copy.deepcopy(params)
    for experiment in tiny["experiments"].values():
        experiment["seeds"] = experiment["seeds"][:1]
        experiment["train"]["epochs"] = epochs
        experiment["train"]["max_images"] = max_images
    return tiny
