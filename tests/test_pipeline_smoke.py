"""End-to-end: the whole Snakefile and the whole dvc.yaml on a tiny config, in temporary folders."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import REPO_ROOT, tiny_params

ENV = os.environ | {
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


def _run(args, cwd, check=True):
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _snakemake(workdir, *extra, check=True):
    return _run(
        [Path(sys.executable).parent / "snakemake", "--snakefile", REPO_ROOT / "Snakefile", "--directory", workdir,
         "--cores", "2", "--config", f"params={workdir / 'params.yaml'}", *extra],
        cwd=workdir,
        check=check,
    )


def _planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M) if rule != "total"}


def _write_params(path, params):
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def tiny(tmp_path, repo_params):
    params = tiny_params(repo_params, epochs=1, max_images=400)
    _write_params(tmp_path / "params.yaml", params)
    return tmp_path, params


@pytest.mark.slow
def test_snakefile_runs_end_to_end_then_reruns_only_what_changed(tiny):
    workdir, params = tiny
    out = _snakemake(workdir)
    report = (workdir / "reports" / "report.md").read_text()
    assert "| CircleLoss |" in report and "| Triplet |" in report and "paper, different data" in report
    assert (workdir / "reports" / "report.html").stat().st_size > 10_000
    assert (workdir / "mlflow.db").is_file()
    assert "Traceback" not in out.stderr

    assert "Nothing to be done" in _snakemake(workdir, "--dry-run").stdout

    params["experiments"]["demo_retrieval"]["losses"]["CircleLoss"]["gamma"] = 64
    _write_params(workdir / "params.yaml", params)
    planned = _planned_jobs(_snakemake(workdir, "--dry-run").stdout)
    assert planned == {"train": 1, "evaluate": 1, "report": 1, "all": 1}

    params["experiments"]["demo_retrieval"]["evaluation"]["ks"] = [1, 2, 4]
    _write_params(workdir / "params.yaml", params)
    planned = _planned_jobs(_snakemake(workdir, "--dry-run").stdout)
    assert planned == {"train": 1, "evaluate": 2, "report": 1, "all": 1}


def test_bad_params_stop_snakemake_before_any_work(tiny):
    workdir, params = tiny
    params["experiments"]["demo_retrieval"]["sampler"]["k"] = 1
    _write_params(workdir / "params.yaml", params)
    result = _snakemake(workdir, check=False)
    assert result.returncode != 0
    assert "experiments.demo_retrieval.sampler.k: 1 is less than the minimum of 2" in result.stdout + result.stderr
    assert not (workdir / "data").exists() and not (workdir / "runs").exists()


@pytest.mark.slow
def test_dvc_repro_runs_the_same_demo(tiny):
    workdir, _ = tiny
    shutil.copy(REPO_ROOT / "dvc.yaml", workdir / "dvc.yaml")
    _run(["git", "init", "-q"], cwd=workdir)
    dvc = Path(sys.executable).parent / "dvc"
    _run([dvc, "init", "-q"], cwd=workdir)
    _run([dvc, "repro"], cwd=workdir)
    assert (workdir / "reports" / "report.md").is_file()
    assert (workdir / "runs" / "demo_retrieval" / "CircleLoss" / "seed0" / "metrics.json").is_file()
    shown = _run([dvc, "metrics", "show"], cwd=workdir).stdout
    assert "reports/metrics.json" in shown and "R@1" in shown
    assert "up to date" in _run([dvc, "status"], cwd=workdir).stdout
