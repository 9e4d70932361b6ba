"""The paper profile's DAG (dry runs): the jobs per table, and what happens when data is not placed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from circle_repro.config import RunSpec, expand_runs, experiment_datasets, load_params, training_run
from circle_repro.workflow import TABLES
from support import REPO_ROOT

ENV = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
PAPER = load_params(REPO_ROOT / "params.yaml", "paper")


def _dry_run(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    command = [
        Path(sys.executable).parent / "snakemake",
        "--snakefile",
        REPO_ROOT / "Snakefile",
        "--directory",
        workdir,
        "--cores",
        "1",
        "-n",
        *targets,
        "--config",
        f"params={REPO_ROOT / 'params.yaml'}",
        "profile=paper",
    ]
    return subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300)


def _jobs(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M) if rule != "total"}


def _runs(table: str | None = None, sweeps: bool = True) -> list[RunSpec]:
    """The evaluated runs of a table (None: every table), with or without the sweep's."""
    return [
        run
        for run in expand_runs(PAPER)
        if (table is None or PAPER["experiments"][run.experiment]["table"] == table)
        and (sweeps or "sweep" not in PAPER["experiments"][run.experiment])
    ]


def _counts(runs: list[RunSpec]) -> dict[str, int]:
    """Train and evaluate jobs of some runs: one evaluation each, one training per distinct trainer run."""
    return {"train": len({training_run(PAPER, run) for run in runs}), "evaluate": len(runs)}


@pytest.fixture
def placed(tmp_path):
    """Every paper data set prepared: a stand-in manifest per data set (a dry run reads none)."""
    for dataset in {name for spec in PAPER["experiments"].values() for name in experiment_datasets(spec)}:
        manifest = tmp_path / "data" / "prepared" / dataset / "manifest.parquet"
        manifest.parent.mkdir(parents=True)
        manifest.write_bytes(b"")
    return tmp_path


def test_all_lists_every_run_of_the_paper_profile(placed):
    result = _dry_run(placed)
    assert result.returncode == 0, result.stderr
    jobs = _jobs(result.stdout)
    assert jobs == {"all": 1, "report": 1} | _counts(_runs())
    assert "skipping" not in result.stderr


def test_the_face_tables_share_one_training_per_backbone_loss_and_seed():
    face = _runs("table1") + _runs("table2") + _runs("table3")
    trainers = {
        training_run(PAPER, run).experiment for run in face if "sweep" not in PAPER["experiments"][run.experiment]
    }
    assert trainers == {"table1_megaface_r34", "table1_megaface_r100"}
    # 5 losses x 3 seeds per backbone train; R34 is evaluated on 5 test sets, R100 on 2; the sweep trains its own
    assert _counts(_runs("table1", sweeps=False) + _runs("table2") + _runs("table3")) == {"train": 30, "evaluate": 105}


def _resources(output: str, rule: str) -> list[dict[str, str]]:
    """The ``resources:`` of each job of ``rule`` a dry run lists."""
    blocks = re.findall(rf"^rule {rule}:\n((?:    .*\n)+)", output, flags=re.M)
    lines = [re.search(r"^    resources: (.*)$", block, flags=re.M).group(1) for block in blocks]
    return [dict(item.split("=", 1) for item in line.split(", ")) for line in lines]


@pytest.mark.parametrize("table", TABLES)
def test_each_table_target_lists_its_runs(placed, table):
    result = _dry_run(placed, table)
    assert result.returncode == 0, result.stderr
    assert _jobs(result.stdout) == {table: 1} | _counts(_runs(table, sweeps=False))
    # every evaluate job embeds on one GPU with its experiment's CPUs per GPU
    evaluations = _resources(result.stdout, "evaluate")
    assert len(evaluations) == _counts(_runs(table, sweeps=False))["evaluate"]
    for resources in evaluations:
        assert resources["gpu"] == "1" and int(resources["cpus_per_task"]) == 8, resources
        assert int(resources["runtime"]) >= 30 and int(resources["mem_mb"]) >= 8000, resources
    if table == "table1":  # sized from the test set: MegaFace's 1M distractors need more than the 8,000 MB floor
        assert all(int(resources["mem_mb"]) > 8000 for resources in evaluations)


def test_without_data_the_manual_sets_are_skipped_with_the_reason(tmp_path):
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    for experiment, spec in PAPER["experiments"].items():
        if spec["dataset"] in ("market1501", "msmt17", "cars196"):
            assert re.search(
                rf"skipping {experiment}: .*\({spec['dataset']}\) is (manual|withdrawn) and not placed", log
            )
        if spec.get("train_dataset") == "ms1mv2":  # every face experiment: the training set is manual
            assert re.search(rf"skipping {experiment}: .*\(ms1mv2\) is manual and not placed", log)
    downloadable = [name for name, spec in PAPER["experiments"].items() if spec["dataset"] in ("cub200", "sop")]
    runs = [run for run in expand_runs(PAPER) if run.experiment in downloadable]
    assert _jobs(result.stdout) == {"all": 1, "report": 1, "fetch_data": 2, "prepare_data": 2} | _counts(runs)


def test_asking_for_a_table_whose_data_is_missing_fails_at_once_saying_what_to_place(tmp_path):
    result = _dry_run(tmp_path, "table4")
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "table4 cannot run" in log
    assert "put data/raw/market1501/Market-1501-v15.09.15.zip in place" in log


def test_fig3_trains_the_am_softmax_and_arcface_gamma_sweeps(placed):
    """Fig. 3 (paper §4.5): besides Circle's gamma and m sweeps, AM-Softmax over gamma 32 ... 1024 and ArcFace over
    {32, 64, 128}; the base values (64) are table1_megaface_r34's own runs, so they are not trained again."""
    result = _dry_run(placed)
    assert result.returncode == 0, result.stderr
    trained = set(re.findall(r"runs/figure3_megaface_r34/([\w.-]+)/seed0/", result.stdout))
    assert {row for row in trained if row.startswith(("AM-Softmax", "ArcFace"))} == {
        "AM-Softmax-gamma32",
        "AM-Softmax-gamma128",
        "AM-Softmax-gamma256",
        "AM-Softmax-gamma512",
        "AM-Softmax-gamma1024",
        "ArcFace-gamma32",
        "ArcFace-gamma128",
    }
    assert re.search(r"runs/table1_megaface_r34/AM-Softmax/seed0/", result.stdout)
