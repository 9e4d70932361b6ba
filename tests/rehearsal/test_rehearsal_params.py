"""The rehearsal's params file: the paper profile with shortened schedules, valid for the CLI."""

from __future__ import annotations

import pytest

from circle_repro.config import expand_runs, select_profile
from circle_repro.rehearsal.params import write_rehearsal_params
from support import REPO_ROOT


@pytest.mark.parametrize("iterations", [1, 3])
def test_every_training_is_cut_to_the_iterations_with_its_warmup_inside(tmp_path, iterations, repo_params):
    params = write_rehearsal_params(REPO_ROOT / "params.yaml", tmp_path / "p.yaml", iterations=iterations, max_p=2)
    paper = select_profile(repo_params, "paper")
    assert params["profile"] == "paper" and set(params["experiments"]) == set(paper["experiments"])
    for name, spec in params["experiments"].items():
        if "train" not in spec:
            continue
        train = spec["train"]
        assert train["iterations"] == iterations and "epochs" not in train, name
        assert "pretrained" not in spec["model"], name
        assert spec["seeds"] == paper["experiments"][name]["seeds"][:1]
        assert spec["sampler"]["p"] == 2 and spec["sampler"]["k"] == paper["experiments"][name]["sampler"]["k"]
        if "warmup" in paper["experiments"][name]["train"]:  # the re-ID recipes: 2,000 warm-up iterations
            assert train.get("warmup", {}).get("iterations") == (None if iterations == 1 else iterations - 1)
    assert {run.experiment for run in expand_runs(params)} == {run.experiment for run in expand_runs(paper)}


def test_without_max_p_the_batches_are_the_papers(tmp_path, repo_params):
    params = write_rehearsal_params(REPO_ROOT / "params.yaml", tmp_path / "p.yaml", iterations=2)
    paper = select_profile(repo_params, "paper")
    for name, spec in params["experiments"].items():
        if "sampler" in spec:
            assert spec["sampler"] == paper["experiments"][name]["sampler"]
