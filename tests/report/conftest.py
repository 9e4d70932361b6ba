"""Fixtures of the report tests: the demo profile's params and hand-made runs (see synthetic_runs)."""

import pytest
from synthetic_runs import write_demo_runs

from circle_repro.config import Study, select_profile


@pytest.fixture(scope="session")
def demo_params(repo_params):
    """The committed params with the demo profile selected, as `circle-repro report` sees them."""
    return select_profile(repo_params, "demo")


@pytest.fixture(scope="session")
def demo_study(demo_params):
    """The demo profile as a Study, as the report reads it."""
    return Study.of(demo_params)


@pytest.fixture
def metrics_files(tmp_path, demo_params):
    """metrics.json (with per_query.npz, similarities.npz, history.csv) of every demo run, under tmp_path/runs."""
    return write_demo_runs(tmp_path / "runs", demo_params)
