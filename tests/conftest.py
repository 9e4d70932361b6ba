"""Shared fixtures: the repository's own params and the demo data set prepared once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import REPO_ROOT

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files instead of comparing")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden files are regenerated (explicit flag: --update-golden)."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def repo_params() -> dict[str, Any]:
    """params.yaml as committed; shared by the whole session, so a test that edits it works on a deep copy."""
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def prepared_mnist5k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data set prepared once per test session."""
    from circle_repro.data.datasets import prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "mnist5k"
    prepare_dataset("mnist5k", out)
    return out


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` (which mmengine's MLflow backend calls) also sets ``$MLFLOW_TRACKING_URI``
    for the rest of the process, and that variable overrides ``tracking.uri``: each test starts and ends
    without it (so module-scoped fixtures, set up before this one, do not inherit it either), as each CLI
    process starts with the user's environment."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
