"""The typed view of the params: experiments, loss rows, sweeps and runs."""

import re

import pytest

from circle_repro.config import (
    TRAIN_RESOURCE_DEFAULTS,
    ConfigError,
    Experiment,
    LossSpec,
    Run,
    Study,
    eval_config,
    expand_runs,
    experiments,
    select_profile,
    train_config,
    training_run,
)
from support import REPO_ROOT


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
    demo = Study.of(select_profile(repo_params, "demo")).experiment("demo_retrieval")
    assert isinstance(demo, Experiment) and demo.resources == TRAIN_RESOURCE_DEFAULTS
    assert demo.datasets == ["mnist5k"] and demo.validation_datasets == []


def test_an_unknown_experiment_suggests_the_nearest(repo_params):
    demo = Study.of(select_profile(repo_params, "demo"))
    with pytest.raises(ConfigError, match="unknown experiment 'demo_retreival'; did you mean 'demo_retrieval'"):
        demo.experiment("demo_retreival")
    with pytest.raises(ConfigError, match="unknown run 'demo_retrieval/CircleLoss/seed9'"):
        demo.find_run("demo_retrieval/CircleLoss/seed9")


def test_a_study_gives_the_runs_and_configs_of_its_params(paper):
    study = Study.of(paper)
    assert study.profile == "paper" and study.runs == expand_runs(paper)
    assert study.dataset_names == sorted({name for exp in study.experiments.values() for name in exp.datasets})
    assert {"ms1mv2", "lfw", "agedb_30", "sop"} <= set(study.dataset_names)
    assert study.experiment("table1_megaface_r34").validation_datasets == ["lfw", "cfp_fp", "agedb_30"]
    for run in study.runs:
        assert study.find_run(run.run_id) == run
        assert study.training_run(run) == training_run(paper, run)
        assert study.train_config(run) == train_config(paper, run) and study.eval_config(run) == eval_config(paper, run)
    assert study.dataset_options("ms1mv2") == paper["datasets"].get("ms1mv2", {})
    assert study.dataset_options("no_such_set") == {}
    assert study.tracking_experiment == f"{paper['tracking']['experiment']}-paper"


def test_the_batch_is_the_samplers_p_times_k(paper):
    for name, exp in Study.of(paper).experiments.items():
        sampler = paper["experiments"][name]["sampler"]
        assert exp.batch_images == sampler["p"] * sampler["k"] > 0


def test_only_and_without_keep_the_profiles_order(paper):
    study = Study.of(paper)
    names = list(study.experiments)
    picked = [names[3], names[0]]
    assert list(study.only(picked).experiments) == [names[0], names[3]]
    assert list(study.without(picked).experiments) == [n for n in names if n not in picked]
    assert study.only(picked).runs == [run for run in study.runs if run.experiment in picked]


def test_a_sweep_keeps_its_entry_as_params_yaml_declares_it(repo_params, paper):
    sweep = Study.of(paper).experiment("figure3_megaface_r34").sweep
    assert sweep is not None and sweep.declared == repo_params["sweeps"]["figure3_megaface_r34"]


def test_the_developer_guides_experiment_example_runs(monkeypatch, capsys):
    guide = (REPO_ROOT / "docs" / "adding.md").read_text()
    section = guide.split("## Add an experiment", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    monkeypatch.chdir(REPO_ROOT)
    exec(compile(code, "docs/adding.md", "exec"), {})
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("demo_retrieval/") and "mnist5k" in first
    assert second.startswith("{") and "'type'" in second
