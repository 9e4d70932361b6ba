"""The paper profile's DAG (dry runs): the jobs per table, and what happens when data is not placed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from circle_repro.config import expand_runs, load_params
from circle_repro.workflow import TABLES
from support import REPO_ROOT

ENV = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
PAPER = load_params(REPO_ROOT / "params.yaml", "paper")


def _dry_run(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    command = [
        Path(sys.executable).parent / "snakemake", "--snakefile", REPO_ROOT / "Snakefile", "--directory", workdir,
        "--cores", "1", "-n", *targets, "--config", f"params={REPO_ROOT / 'params.yaml'}", "profile=paper",
    ]
    return subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300)


def _jobs(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M) if rule != "total"}


def _runs(table: str | None = None) -> int:
    return sum(1 for run in expand_runs(PAPER) if table is None or PAPER["experiments"][run.experiment]["table"] == table)


@pytest.fixture
def placed(tmp_path):
    """Every paper data set prepared: a stand-in manifest per data set (a dry run reads none)."""
    for dataset in {spec["dataset"] for spec in PAPER["experiments"].values()}:
        manifest = tmp_path / "data" / "prepared" / dataset / "manifest.parquet"
        manifest.parent.mkdir(parents=True)
        manifest.write_bytes(b"")
    return tmp_path


def test_all_lists_every_run_of_the_paper_profile(placed):
    result = _dry_run(placed)
    assert result.returncode == 0, result.stderr
    jobs = _jobs(result.stdout)
    assert jobs == {"all": 1, "report": 1, "train": _runs(), "evaluate": _runs()}
    assert "skipping" not in result.stderr


@pytest.mark.parametrize("table", ["table4", "table5"])
def test_each_table_target_lists_its_runs(placed, table):
    result = _dry_run(placed, table)
    assert result.returncode == 0, result.stderr
    assert _jobs(result.stdout) == {table: 1, "train": _runs(table), "evaluate": _runs(table)}


@pytest.mark.parametrize("table", [t for t in TABLES if t not in ("table4", "table5")])
def test_a_table_without_experiments_says_so(placed, table):
    result = _dry_run(placed, table)
    assert result.returncode != 0
    assert f"{table}: profile 'paper' has no experiment for it" in result.stdout + result.stderr


def test_without_data_the_manual_sets_are_skipped_with_the_reason(tmp_path):
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    for experiment, spec in PAPER["experiments"].items():
        if spec["dataset"] in ("market1501", "msmt17", "cars196"):
            assert re.search(rf"skipping {experiment}: .*\({spec['dataset']}\) is (manual|withdrawn) and not placed", log)
    downloadable = [name for name, spec in PAPER["experiments"].items() if spec["dataset"] in ("cub200", "sop")]
    runs = sum(1 for run in expand_runs(PAPER) if run.experiment in downloadable)
    assert _jobs(result.stdout) == {"all": 1, "report": 1, "prepare_data": 2, "train": runs, "evaluate": runs}


def test_asking_for_a_table_whose_data_is_missing_fails_at_once_saying_what_to_place(tmp_path):
    result = _dry_run(tmp_path, "table4")
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "table4 cannot run" in log
    assert "put data/raw/market1501/Market-1501-v15.09.15.zip in place" in log
