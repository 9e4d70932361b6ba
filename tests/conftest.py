"""Shared fixtures: the repository's own params, and a tiny variant of them for quick runs."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def repo_params() -> dict[str, Any]:
    """params.yaml as committed."""
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def tiny_params(params: dict[str, Any], epochs: int = 1, max_images: int | None = 400) -> dict[str, Any]:
    """The committed params cut down to one seed, one epoch and a training subset."""
    tiny = copy.deepcopy(params)
    for experiment in tiny["experiments"].values():
        experiment["seeds"] = experiment["seeds"][:1]
        experiment["train"]["epochs"] = epochs
        experiment["train"]["max_images"] = max_images
    return tiny


@pytest.fixture(scope="session")
def prepared_mnist5k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data set prepared once per test session."""
    from circle_repro.data.datasets import prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "mnist5k"
    prepare_dataset("mnist5k", out)
    return out
