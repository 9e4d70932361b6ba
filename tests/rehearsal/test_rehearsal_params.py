"""The rehearsal's params file: the paper profile with shortened schedules, valid for the CLI."""

from __future__ import annotations

import pytest

from circle_repro.config import Study, select_profile
from circle_repro.rehearsal.params import write_rehearsal_params
from support import REPO_ROOT


@pytest.mark.parametrize("iterations", [1, 3])
def test_every_training_is_cut_to_the_iterations_with_its_warmup_inside(tmp_path, iterations, repo_params):
    study = write_rehearsal_params(REPO_ROOT / "params.yaml", tmp_path / "p.yaml", iterations=iterations, max_p=2)
    paper = Study.of(select_profile(repo_params, "paper"))
    assert study.profile == "paper" and set(study.experiments) == set(paper.experiments)
    for name, experiment in study.experiments.items():
        spec, paper_spec = experiment.spec, paper.experiment(name).spec
        if "train" not in spec:
            continue
        train = spec["train"]
        assert train["iterations"] == iterations and "epochs" not in train, name
        assert "pretrained" not in spec["model"], name
        assert experiment.seeds == paper.experiment(name).seeds[:1]
        assert spec["sampler"]["p"] == 2 and spec["sampler"]["k"] == paper_spec["sampler"]["k"]
        if "warmup" in paper_spec["train"]:  # the re-ID recipes: 2,000 warm-up iterations
            assert train.get("warmup", {}).get("iterations") == (None if iterations == 1 else iterations - 1)
    assert {run.experiment for run in study.runs} == {run.experiment for run in paper.runs}


def test_without_max_p_the_batches_are_the_papers(tmp_path, repo_params):
    study = write_rehearsal_params(REPO_ROOT / "params.yaml", tmp_path / "p.yaml", iterations=2)
    paper = Study.of(select_profile(repo_params, "paper"))
    for name, experiment in study.experiments.items():
        if "sampler" in experiment.spec:
            assert experiment.spec["sampler"] == paper.experiment(name).spec["sampler"]
