"""The typed view of the params: experiments, loss rows, sweeps and runs."""

import pytest

from circle_repro.config import (
    TRAIN_RESOURCE_DEFAULTS,
    ConfigError,
    Experiment,
    LossSpec,
    Run,
    expand_runs,
    experiment,
    experiments,
    select_profile,
    train_config,
)


@pytest.fixture(scope="module")
def paper(repo_params):
    return select_profile(repo_params, "paper")


def test_every_experiment_has_a_typed_view_with_the_same_runs(paper):
    typed = experiments(paper)
    assert list(typed) == list(paper["experiments"])
    assert sorted(run for exp in typed.values() for run in exp.runs) == expand_runs(paper)


def test_a_sweep_is_typed_and_its_base_is_not(paper):
    typed = experiments(paper)
    sweeps = {name for name, exp in typed.items() if exp.is_sweep}
    assert sweeps == {name for name, spec in paper["experiments"].items() if "sweep" in spec} and sweeps
    sweep = typed[sorted(sweeps)[0]].sweep
    assert sweep is not None and not typed[sweep.base].is_sweep and sweep.loss in typed[sweep.base].losses


def test_loss_rows_give_back_their_params_entry(paper):
    for exp in experiments(paper).values():
        for row, loss in exp.losses.items():
            assert isinstance(loss, LossSpec) and loss.name == row
            assert loss.config == paper["experiments"][exp.name]["losses"][row]


def test_trained_by_experiments_take_their_trainers_data_and_resources(paper):
    typed = experiments(paper)
    evaluating = [exp for exp in typed.values() if exp.trained_by]
    assert evaluating
    for exp in evaluating:
        trainer = typed[exp.trained_by]
        assert exp.train_dataset == trainer.train_dataset and exp.resources == trainer.resources
        run = Run(exp.name, next(iter(exp.losses)), exp.seeds[0])
        assert train_config(paper, run)["dataset"] == exp.train_dataset


def test_resources_are_filled_with_the_defaults(repo_params):
    demo = experiment(select_profile(repo_params, "demo"), "demo_retrieval")
    assert isinstance(demo, Experiment) and demo.resources == TRAIN_RESOURCE_DEFAULTS
    assert demo.datasets == ["mnist5k"]


def test_an_unknown_experiment_suggests_the_nearest(repo_params):
    with pytest.raises(ConfigError, match="unknown experiment 'demo_retreival'; did you mean 'demo_retrieval'"):
        experiment(select_profile(repo_params, "demo"), "demo_retreival")
