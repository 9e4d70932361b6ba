"""Rerun triggers: each step's trigger moves only when a setting it depends on moves."""

import copy

from circle_repro import workflow as wf
from circle_repro.config import expand_runs


def _triggers(params):
    runs = expand_runs(params)
    return (
        {run: wf.train_trigger(params, run) for run in runs},
        {run: wf.eval_trigger(params, run) for run in runs},
        wf.report_trigger(params),
    )


def test_loss_setting_moves_only_that_loss_training(repo_params):
    changed = copy.deepcopy(repo_params)
    changed["experiments"]["demo_retrieval"]["losses"]["CircleLoss"]["gamma"] = 64
    (train_a, eval_a, report_a), (train_b, eval_b, report_b) = _triggers(repo_params), _triggers(changed)
    moved = {run.loss for run in train_a if train_a[run] != train_b[run]}
    assert moved == {"CircleLoss"}
    assert eval_a == eval_b and report_a == report_b


def test_evaluation_setting_moves_only_evaluation(repo_params):
    changed = copy.deepcopy(repo_params)
    changed["experiments"]["demo_retrieval"]["evaluation"]["ks"] = [1, 2]
    (train_a, eval_a, report_a), (train_b, eval_b, report_b) = _triggers(repo_params), _triggers(changed)
    assert train_a == train_b and report_a == report_b
    moved = {run for run in eval_a if eval_a[run] != eval_b[run]}
    assert moved == {run for run in eval_a if run.experiment == "demo_retrieval"}


def test_report_title_moves_only_the_report(repo_params):
    changed = copy.deepcopy(repo_params)
    changed["report"]["title"] = "another title"
    (train_a, eval_a, report_a), (train_b, eval_b, report_b) = _triggers(repo_params), _triggers(changed)
    assert train_a == train_b and eval_a == eval_b and report_a != report_b


def test_targets_cover_every_run(repo_params):
    metrics = wf.metrics_targets(repo_params)
    assert len(metrics) == len(expand_runs(repo_params))
    assert "runs/demo_retrieval/CircleLoss/seed0/metrics.json" in metrics
    assert wf.prepared_dir(repo_params, "demo_retrieval").as_posix() == "data/prepared/mnist5k"
