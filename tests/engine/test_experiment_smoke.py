"""Every experiment of every profile in params.yaml trains and evaluates (one batch, stand-in data).

The stand-in for each experiment's data set is the prepared MNIST-5k, which has the same image
format as every data set the demo and mini profiles use; what is exercised is the experiment's
real backbone, loss, sampler and evaluation protocol.
"""

from __future__ import annotations

import math

import pytest
import yaml

from circle_repro.config import RunSpec, eval_config, select_profile, train_config
from circle_repro.engine.evaluate import evaluate_run
from circle_repro.engine.train import train_run
from circle_repro.layout import evaluation_dir
from support import REPO_ROOT, tiny_params

_PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def _cases() -> list:
    """Every (profile, experiment, loss) of the MNIST-style profiles; of a sweep, only its first row (the rows
    differ in one number). The paper profile's recipes run on their own fixtures: test_paper_recipes.py."""
    cases = []
    for profile in (name for name in _PARAMS["profiles"] if name != "paper"):
        for experiment, spec in select_profile(_PARAMS, profile)["experiments"].items():
            losses = list(spec["losses"])[:1] if "sweep" in spec else spec["losses"]
            cases += [pytest.param(profile, experiment, loss, id=f"{profile}:{experiment}/{loss}") for loss in losses]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("profile", "experiment", "loss"), _cases())
def test_experiment_trains_and_evaluates(profile, experiment, loss, repo_params, prepared_mnist5k, tmp_path):
    params = tiny_params(select_profile(repo_params, profile), epochs=1, max_images=80)
    run = RunSpec(experiment, loss, params["experiments"][experiment]["seeds"][0])
    train_run(train_config(params, run), prepared_mnist5k, tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = evaluate_run(tmp_path, prepared_mnist5k, eval_config(params, run), evaluation_dir(tmp_path))
    assert result.metrics and all(math.isfinite(value) for value in result.metrics.values())
