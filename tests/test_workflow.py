"""Rerun triggers: each step's trigger moves only when a setting it depends on moves."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from circle_repro import workflow as wf
from circle_repro.config import (
    TRAIN_RESOURCE_DEFAULTS,
    ConfigError,
    RunSpec,
    Study,
    config_hash,
    expand_runs,
    expand_trained_by,
    select_profile,
    train_config,
)
from support import REPO_ROOT

BIN = Path(sys.executable).parent


def _study(params, profile=None):
    """The Study of a params mapping: every experiment, or one profile's."""
    return Study.of(expand_trained_by(params) if profile is None else select_profile(params, profile))


def _triggers(params):
    study = _study(params)
    return (
        {run: wf.train_trigger(study, run) for run in study.runs},
        {run: wf.eval_trigger(study, run) for run in study.runs},
        wf.report_trigger(study),
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


def test_bookkeeping_moves_no_trigger_and_no_config_hash(repo_params):
    """Tracking settings, a data set's mirror, the table a result fills and resources change no result."""
    changed = copy.deepcopy(repo_params)
    changed["tracking"] = {"uri": "http://mlflow.example:5000", "experiment": "team-circle"}
    changed["datasets"]["fashion_mnist"]["mirror"] = "/srv/mirrors/fashion-mnist"
    changed["experiments"]["demo_retrieval"]["resources"] = {"runtime_min": 999, "mem_mb_per_gpu": 123456}
    assert _triggers(changed) == _triggers(repo_params)
    assert wf.dataset_trigger(_study(changed), "fashion_mnist") == wf.dataset_trigger(
        _study(repo_params), "fashion_mnist"
    )
    changed["experiments"]["demo_retrieval"]["table"] = "table4"  # the report's layout: no training moves
    (train_a, eval_a, report_a), (train_b, eval_b, report_b) = _triggers(repo_params), _triggers(changed)
    assert train_a == train_b and report_a != report_b
    assert {run.experiment for run in eval_a if eval_a[run] != eval_b[run]} == {"demo_retrieval"}
    runs = expand_runs(expand_trained_by(repo_params))
    assert all(config_hash(train_config(changed, run)) == config_hash(train_config(repo_params, run)) for run in runs)
    # a setting that changes a result still moves its trigger
    changed["datasets"]["fashion_mnist"]["per_class"] = 100
    assert wf.dataset_trigger(_study(changed), "fashion_mnist") != wf.dataset_trigger(
        _study(repo_params), "fashion_mnist"
    )


def test_the_params_file_and_profile_reach_the_jobs_as_quoted_options():
    assert wf.params_options("params.yaml", "demo") == "--params params.yaml --profile demo"
    assert wf.params_options("/a dir/p.yaml", "mini") == "--params '/a dir/p.yaml' --profile mini"


def test_snakemake_config_takes_only_the_params_file_and_profile():
    wf.check_snakemake_config({})
    wf.check_snakemake_config({"params": "other.yaml", "profile": "mini"})
    with pytest.raises(
        ConfigError, match=r"no config keys \['experiments', 'tracking'\].*--config params=path/to/params.yaml"
    ):
        wf.check_snakemake_config({"params": "p.yaml", "tracking": {}, "experiments": {}})


def test_downloaded_data_sets_wait_for_their_fetch_and_embedded_ones_for_nothing():
    assert wf.fetch_targets("fashion_mnist") == ["data/raw/fashion_mnist/fetched.json"]
    assert wf.fetch_targets("cub200") == ["data/raw/cub200/fetched.json"]
    assert wf.fetch_targets("mnist5k") == []


def test_targets_cover_every_run(repo_params):
    study = _study(repo_params)
    metrics = wf.metrics_targets(study)
    assert len(metrics) == len(expand_runs(expand_trained_by(repo_params)))
    assert "runs/demo_retrieval/CircleLoss/seed0/evaluation/metrics.json" in metrics
    assert (
        wf.evaluate_inputs(study, "demo_retrieval", "CircleLoss", 0)["manifest"]
        == "data/prepared/mnist5k/manifest.parquet"
    )
    assert wf.train_inputs(study, "demo_retrieval") == {"manifest": "data/prepared/mnist5k/manifest.parquet"}


# --- Experiments that evaluate another experiment's weights (trained_by) -------------------------


def test_a_trained_by_experiment_evaluates_its_trainers_weights_on_its_own_data(repo_params):
    params = _study(repo_params, "paper")
    assert wf.evaluate_inputs(params, "table2_lfw_r34", "ArcFace", "1") == {
        "manifest": "data/prepared/lfw/manifest.parquet",
        "weights": "runs/table1_megaface_r34/ArcFace/seed1/model.pth",
        "initial_weights": "runs/table1_megaface_r34/ArcFace/seed1/model_init.pth",
        "record": "runs/table1_megaface_r34/ArcFace/seed1/train.json",
    }
    assert (
        wf.evaluate_inputs(params, "table5_sop", "CircleLoss", 0)["weights"]
        == "runs/table5_sop/CircleLoss/seed0/model.pth"
    )
    assert "data/prepared/ms1mv2/manifest.parquet" in wf.data_targets(params)
    # the trainer validates on the three verification packs during training: train inputs and data targets
    assert wf.train_inputs(params, "table1_megaface_r34") == {
        "manifest": "data/prepared/ms1mv2/manifest.parquet",
        "validation_lfw": "data/prepared/lfw/manifest.parquet",
        "validation_cfp_fp": "data/prepared/cfp_fp/manifest.parquet",
        "validation_agedb_30": "data/prepared/agedb_30/manifest.parquet",
    }
    assert wf.train_inputs(params, "table5_sop") == {"manifest": "data/prepared/sop/manifest.parquet"}
    assert "data/prepared/agedb_30/manifest.parquet" in wf.data_targets(params)
    # its metrics are its own; the training history is the trainer's, listed once
    assert "runs/table2_lfw_r34/ArcFace/seed1/evaluation/metrics.json" in wf.metrics_targets(params)
    histories = wf.history_targets(params)
    assert "runs/table1_megaface_r34/ArcFace/seed1/history.csv" in histories
    assert not any(path.startswith("runs/table2_") for path in histories)
    assert len(histories) == len(set(histories))


def test_a_trainer_setting_moves_the_evaluations_of_its_weights_too(repo_params):
    changed = copy.deepcopy(repo_params)
    r34 = changed["experiments"]["table1_megaface_r34"]
    r34["losses"] = copy.deepcopy(r34["losses"])  # its own copy: R100 shares the YAML anchor's mapping
    r34["losses"]["CircleLoss"]["gamma"] = 128
    (train_a, eval_a, _), (train_b, eval_b, _) = _triggers(repo_params), _triggers(changed)
    moved = {run for run in train_a if train_a[run] != train_b[run]}
    trained_by_r34 = {"table1_megaface_r34", "table2_lfw_r34", "table2_ytf_r34", "table2_cfp_fp_r34", "table3_ijbc_r34"}
    assert {run.experiment for run in moved} == trained_by_r34
    assert {run.loss for run in moved} == {"CircleLoss"}
    assert eval_a == eval_b
    run = RunSpec("table2_lfw_r34", "CircleLoss", 0)
    assert train_b[run] == train_b[RunSpec("table1_megaface_r34", "CircleLoss", 0)]


def test_blocked_experiments_name_a_missing_training_set_too(repo_params, tmp_path):
    params = _study(repo_params, "paper")
    (tmp_path / "prepared" / "lfw").mkdir(parents=True)  # the test set prepared, the training set not placed
    (tmp_path / "prepared" / "lfw" / "manifest.parquet").write_bytes(b"")
    blocked = wf.blocked_experiments(params, tmp_path)
    assert "(ms1mv2) is manual and not placed" in blocked["table2_lfw_r34"]
    assert "(lfw)" not in blocked["table2_lfw_r34"]


# --- Cluster resources and the launch line (profiles/slurm) --------------------------------------


def _with_resources(params, experiment, **resources):
    changed = copy.deepcopy(params)
    changed["experiments"][experiment]["resources"] = resources
    return changed


def test_experiments_without_resources_train_on_one_cpu_with_the_defaults(repo_params):
    defaults = TRAIN_RESOURCE_DEFAULTS
    assert defaults["gpus"] == 0
    cpu_only = [  # a trained_by experiment inherits its trainer's resources
        name
        for name, spec in repo_params["experiments"].items()
        if "resources" not in spec and "trained_by" not in spec
    ]
    assert "demo_retrieval" in cpu_only and "mini_verification" in cpu_only
    for experiment in cpu_only:
        assert wf.train_resources(_study(repo_params), experiment) == {
            "runtime": defaults["runtime_min"],
            "mem_mb": defaults["mem_mb_per_gpu"],
            "cpus_per_task": defaults["cpus_per_gpu"],
            "nodes": 1,
        }
        assert wf.train_launch_prefix(_study(repo_params), experiment) == "circle-repro"
        assert wf.train_launcher_args(_study(repo_params), experiment) == ""


def test_gpu_resources_become_the_slurm_plugin_names(repo_params):
    params = _study(
        _with_resources(
            repo_params,
            "demo_retrieval",
            gpus=4,
            cpus_per_gpu=8,
            mem_mb_per_gpu=32000,
            runtime_min=720,
            partition="gpu",
        )
    )
    assert wf.train_resources(params, "demo_retrieval") == {
        "runtime": 720,
        "mem_mb": 4 * 32000,
        "cpus_per_task": 4 * 8,  # one torchrun task holds the CPUs of all its GPU processes
        "gpu": 4,
        "nodes": 1,
        "slurm_partition": "gpu",
    }
    launch = wf.train_launch_prefix(params, "demo_retrieval")
    assert launch == "torchrun --standalone --nproc_per_node=4 -m circle_repro.cli"
    assert wf.train_launcher_args(params, "demo_retrieval") == "--launcher pytorch"


def test_partial_resources_keep_the_other_defaults_and_one_gpu_needs_no_torchrun(repo_params):
    params = _study(_with_resources(repo_params, "demo_retrieval", gpus=1))
    resources = wf.train_resources(params, "demo_retrieval")
    assert resources["gpu"] == 1 and resources["runtime"] == TRAIN_RESOURCE_DEFAULTS["runtime_min"]
    assert "slurm_partition" not in resources
    assert wf.train_launch_prefix(params, "demo_retrieval") == "circle-repro"
    assert wf.train_launcher_args(params, "demo_retrieval") == ""


def test_train_rule_declares_only_names_some_experiment_uses(repo_params):
    demo = _study(repo_params, "demo")  # its experiments declare no resources
    assert set(wf.train_rule_resources(demo)) == {"runtime", "mem_mb", "cpus_per_task", "nodes"}
    declared = wf.train_rule_resources(
        _study(_with_resources(repo_params, "demo_retrieval", gpus=2, partition="gpu"), "demo")
    )
    assert set(declared) == {"runtime", "mem_mb", "cpus_per_task", "nodes", "gpu", "slurm_partition"}

    class Wildcards:
        def __init__(self, experiment):
            self.experiment = experiment

    assert declared["gpu"](Wildcards("demo_retrieval")) == 2
    assert declared["slurm_partition"](Wildcards("demo_retrieval")) == "gpu"
    assert declared["gpu"](Wildcards("demo_verification")) is None  # None: Snakemake drops the resource
    assert declared["slurm_partition"](Wildcards("demo_verification")) is None


def test_resources_are_validated_and_move_no_rerun_trigger(repo_params):
    from circle_repro.config import ConfigError, validate_params

    params = _with_resources(repo_params, "demo_retrieval", gpus=2, partition="gpu")
    validate_params(params)
    assert _triggers(params) == _triggers(repo_params)
    for bad, message in (
        ({"gpus": -1}, "resources.gpus: -1 is less than the minimum of 0"),
        ({"gpu": 2}, "'gpu' was unexpected"),
        ({"partition": ""}, "resources.partition"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate_params(_with_resources(repo_params, "demo_retrieval", **bad))


def test_cpu_steps_declare_modest_resources():
    for rule in ("prepare_data", "evaluate", "report"):
        resources = wf.step_resources(rule)
        assert set(resources) == {"runtime", "mem_mb", "cpus_per_task"} and resources["cpus_per_task"] == 1


def test_evaluate_jobs_of_gpu_experiments_get_one_gpu_their_cpus_and_partition(repo_params):
    params = _study(_with_resources(repo_params, "demo_retrieval", gpus=2, cpus_per_gpu=6, partition="gpu"), "demo")
    throughput, rates = wf.job_rates(REPO_ROOT / "nope.json", REPO_ROOT / "nope.yaml")
    assert (throughput, rates) == (None, None)  # absent files: nothing estimated, the floors
    assert wf.evaluate_resources(params, "demo_retrieval", None, None) == {
        "runtime": 30, "mem_mb": 8000, "cpus_per_task": 6, "gpu": 1, "slurm_partition": "gpu",
    }  # fmt: skip
    assert wf.evaluate_resources(params, "demo_verification", None, None) == wf.step_resources("evaluate")
    assert (wf.evaluate_threads(params, "demo_retrieval"), wf.evaluate_threads(params, "demo_verification")) == (6, 1)
    rule = wf.evaluate_rule_resources(params, None, None)
    assert set(rule) == {"runtime", "mem_mb", "cpus_per_task", "gpu", "slurm_partition"}
    gpu_job, cpu_job = SimpleNamespace(experiment="demo_retrieval"), SimpleNamespace(experiment="demo_verification")
    assert (rule["gpu"](gpu_job), rule["gpu"](cpu_job), rule["cpus_per_task"](gpu_job)) == (1, None, 6)
    prepare = wf.prepare_rule_resources(params, None)
    assert prepare["runtime"](SimpleNamespace(dataset="ms1mv2")) == 60  # any data set, not only the profile's


# --- Snakefile style: snakefmt and snakemake --lint ----------------------------------------------

SNAKEFILES = [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk"))]

# Lint findings that are intentional, by title. The project installs one pinned pip environment
# (requirements.lock; conda is not available on the target machines), so no rule names a conda
# environment or a container. The params file, profile, throughput and rates files reach the shell commands
# from outside the rules on purpose: under `params:` they would be rerun triggers, and moving or
# copying a file would retrain everything (the settings themselves are triggers, via circle_repro.workflow).
ALLOWED_LINTS = {
    "Specify a conda environment or container for each rule.",
    "Shell command directly uses variable PARAMS_OPTIONS from outside of the rule",
    "Shell command directly uses variable THROUGHPUT_FILE from outside of the rule",
    "Shell command directly uses variable RATES_FILE from outside of the rule",
}


def test_snakefiles_are_formatted_with_snakefmt():
    result = subprocess.run(
        [BIN / "snakefmt", "--check", *SNAKEFILES], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"run `snakefmt Snakefile workflow/rules`:\n{result.stdout}{result.stderr}"


def test_snakemake_lint_finds_only_documented_lints():
    result = subprocess.run(
        [BIN / "snakemake", "--lint"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Error" not in output, output
    findings = re.findall(r"^Lints for (.+?) \(line \d+, .+?\):\n((?:    \*.*\n|      .*\n)+)", output, flags=re.M)
    assert (result.returncode != 0) == bool(findings), output
    titles = {(item, title) for item, block in findings for title in re.findall(r"^    \* (.+?):$", block, flags=re.M)}
    unexpected = {(item, title) for item, title in titles if title not in ALLOWED_LINTS}
    assert not unexpected, output
