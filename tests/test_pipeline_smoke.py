"""End-to-end: the whole Snakefile and the whole dvc.yaml on a tiny config, in temporary folders."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from fixtures.formats import build_verification_bin

from circle_repro.config import expand_runs, experiments, load_params
from circle_repro.data.manifest import read_manifest
from circle_repro.data.sources import load_sources
from circle_repro.plan import experiment_group
from support import REPO_ROOT, tiny_params, write_params

DATA_PIPELINE = Path("datasets") / "dvc.yaml"  # the paper data sets' stages, apart from the demo's dvc.yaml
PLACED = DATA_PIPELINE.with_name("placed.yaml")  # which of them have a stage
ENV = os.environ | {
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


def _run(args, cwd, check=True, env=ENV):
    # umask 022: what a team's shared project folder usually has; every output must be readable by the group
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, umask=0o022)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _snakemake(workdir, *extra, check=True, params_file="params.yaml", env=ENV):
    return _run(
        [
            Path(sys.executable).parent / "snakemake",
            "--snakefile",
            REPO_ROOT / "Snakefile",
            "--directory",
            workdir,
            "--cores",
            "2",
            "--config",
            f"params={workdir / params_file}",
            *extra,
        ],
        cwd=workdir,
        check=check,
        env=env,
    )


def _planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M) if rule != "total"}


@pytest.fixture
def tiny(tmp_path, repo_params):
    params = tiny_params(repo_params, epochs=1, max_images=400)
    write_params(params, tmp_path / "params.yaml")
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
    # planned against actual: every run's jobs left a Snakemake benchmark file that the report read
    demo = load_params(workdir / "params.yaml")
    runs = {table: sum(1 for run in expand_runs(demo) if experiment_group(experiments(demo)[run.experiment]) == table)
            for table in ("table5", "figures")}  # fmt: skip
    assert f"| Table 5 | {runs['table5']} | 0.00 | 0.00 | " in report
    assert (
        f"| {runs['table5']} of {runs['table5']} |" in report
        and f"| {runs['figures']} of {runs['figures']} |" in report
    )

    _snakemake(workdir, "--report", "reports/snakemake_report.zip")
    with zipfile.ZipFile(workdir / "reports" / "snakemake_report.zip") as archive:
        names = archive.namelist()
    assert any(name.endswith("/report.html") and "/data/" in name for name in names), names
    assert any(name.endswith("/results.csv") for name in names), names

    assert "Nothing to be done" in _snakemake(workdir, "--dry-run").stdout

    # every output is readable by the group (umask 022), the MLflow store included
    outputs = [p for p in workdir.rglob("*") if p.is_file() and ".snakemake" not in p.parts]
    private = [str(p.relative_to(workdir)) for p in outputs if not p.stat().st_mode & stat.S_IRGRP]
    assert not private, f"not readable by the group: {private}"
    # the trained weights are logged to each training run, and the report names where
    weights = sorted(workdir.glob("mlartifacts/*/artifacts/model.pth"))  # the experiment keeps its runs in mlartifacts/
    assert len(weights) == len(list(workdir.glob("runs/*/*/seed*/model.pth"))) > 0
    assert report.count("/artifacts/model.pth |") == len(expand_runs(demo))

    # bookkeeping reruns nothing: another MLflow store and experiment, in a copy of the params file ...
    copy = yaml.safe_load((workdir / "params.yaml").read_text())
    copy["tracking"] = {"uri": "sqlite:///elsewhere/team.db", "experiment": "team-circle"}
    (workdir / "bookkeeping").mkdir()
    (workdir / "bookkeeping" / "params.yaml").write_text(yaml.safe_dump(copy, sort_keys=False))
    assert "Nothing to be done" in _snakemake(workdir, "--dry-run", params_file="bookkeeping/params.yaml").stdout
    # ... or a tracking server named by MLFLOW_TRACKING_URI
    server = ENV | {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    assert "Nothing to be done" in _snakemake(workdir, "--dry-run", env=server).stdout

    # the run recorded in DVC as docs/dvc.md says: every output of dvc.yaml's stages is one Snakemake wrote
    dvc = _dvc_repo(workdir)
    _run([dvc, "repro", "validate"], cwd=workdir)
    _run([dvc, "commit", "-f"], cwd=workdir)
    assert _run([dvc, "status"], cwd=workdir).stdout.strip() == "Data and pipelines are up to date."
    assert "Running stage" not in _run([dvc, "repro", "--dry"], cwd=workdir).stdout  # nothing to redo

    params["experiments"]["demo_retrieval"]["losses"]["CircleLoss"]["gamma"] = 64
    write_params(params, workdir / "params.yaml")
    planned = _planned_jobs(_snakemake(workdir, "--dry-run").stdout)
    assert planned == {"train": 1, "evaluate": 1, "report": 1, "all": 1}

    params["experiments"]["demo_retrieval"]["evaluation"]["ks"] = [1, 2, 4]
    write_params(params, workdir / "params.yaml")
    planned = _planned_jobs(_snakemake(workdir, "--dry-run").stdout)
    assert planned == {"train": 1, "evaluate": 2, "report": 1, "all": 1}


def test_bad_params_stop_snakemake_before_any_work(tiny):
    workdir, params = tiny
    params["experiments"]["demo_retrieval"]["sampler"]["k"] = 1
    write_params(params, workdir / "params.yaml")
    result = _snakemake(workdir, check=False)
    assert result.returncode != 0
    assert "experiments.demo_retrieval.sampler.k: 1 is less than the minimum of 2" in result.stdout + result.stderr
    assert not (workdir / "data").exists() and not (workdir / "runs").exists()


@pytest.mark.parametrize("runner", ["snakemake", "dvc repro"])
@pytest.mark.parametrize("name", ["..", "X;touch PWNED;"])
def test_hostile_names_stop_the_workflow_before_any_shell_line(tiny, name, runner):
    workdir, params = tiny
    losses = params["experiments"]["demo_retrieval"]["losses"]
    losses[name] = losses.pop("Triplet")
    write_params(params, workdir / "params.yaml")
    if runner == "snakemake":
        result = _snakemake(workdir, check=False)
    else:
        result = _run([_dvc_repo(workdir), "repro"], cwd=workdir, check=False)
    assert result.returncode != 0
    assert f"experiments.demo_retrieval.losses: {name!r} does not match" in result.stdout + result.stderr
    assert not (workdir / "PWNED").exists() and not (workdir / "data").exists() and not (workdir / "runs").exists()


def test_every_dvc_stage_runs_after_the_params_are_validated():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    stamp = stages["validate"]["outs"][0]
    stamp = next(iter(stamp)) if isinstance(stamp, dict) else stamp
    assert stages["validate"]["cmd"].startswith("circle-repro validate ") and stamp in stages["validate"]["cmd"]
    assert stages["validate"]["params"] == [{"params.yaml": None}]  # every key: any change is checked again
    for name, stage in stages.items():
        if name != "validate":
            assert stamp in stage["deps"], f"dvc.yaml stage {name} may run before params.yaml is validated"


def test_a_params_file_given_with_configfile_is_refused_naming_the_option_to_use(tiny):
    workdir, _ = tiny
    result = _run(
        [Path(sys.executable).parent / "snakemake", "--snakefile", REPO_ROOT / "Snakefile", "--directory", workdir,
         "--cores", "1", "--dry-run", "--configfile", workdir / "params.yaml"],
        cwd=workdir, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "not with --configfile" in result.stdout + result.stderr
    assert "--config params=path/to/params.yaml" in result.stdout + result.stderr


def _dvc_repo(workdir, placed=()):
    """``workdir`` as a git + DVC repository holding both pipeline files, with the paper data sets ``placed``
    listed in placed.yaml; the path of the dvc executable."""
    shutil.copy(REPO_ROOT / "dvc.yaml", workdir / "dvc.yaml")
    (workdir / DATA_PIPELINE).parent.mkdir()
    shutil.copy(REPO_ROOT / DATA_PIPELINE, workdir / DATA_PIPELINE)
    (workdir / PLACED).write_text(yaml.safe_dump({"placed": list(placed)}))
    return _dvc_init(workdir)


def _dvc_init(workdir):
    """``workdir`` as a git + DVC repository with this repository's DVC config; the path of the dvc executable."""
    _run(["git", "init", "-q"], cwd=workdir)
    dvc = Path(sys.executable).parent / "dvc"
    _run([dvc, "init", "-q"], cwd=workdir)
    shutil.copy(REPO_ROOT / ".dvc" / "config", workdir / ".dvc" / "config")  # the cache link type users get
    return dvc


def _git_commit(workdir, message):
    _run(["git", "add", "-A"], cwd=workdir)
    _run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", message],
         cwd=workdir)  # fmt: skip


def test_recording_outputs_in_dvc_keeps_their_modification_times(tmp_path):
    """``dvc commit`` after a Snakemake run must not touch an output's mtime: Snakemake would then take every
    downstream job as out of date and rerun it (every evaluation, at paper scale)."""
    dvc = _dvc_init(tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {"cmd": "true", "outs": ["model.pth"]}}}))
    model = tmp_path / "model.pth"
    model.write_bytes(b"weights")
    os.utime(model, (1_000_000_000, 1_000_000_000))
    _run([dvc, "commit", "-f", "-q"], cwd=tmp_path)
    assert model.stat().st_mtime == 1_000_000_000
    assert model.read_bytes() == b"weights" and not model.stat().st_mode & stat.S_IWUSR  # DVC write-protects it
    assert _run([dvc, "status"], cwd=tmp_path).stdout.strip() == "Data and pipelines are up to date."


@pytest.mark.slow
def test_dvc_repro_runs_the_same_demo(tiny):
    workdir, params = tiny
    dvc = _dvc_repo(workdir)
    _run([dvc, "repro"], cwd=workdir)  # no paper data set placed: their stages are not part of it
    assert (workdir / "reports" / "report.md").is_file()
    assert _run([dvc, "status"], cwd=workdir).stdout.strip() == "Data and pipelines are up to date."
    runs = sorted(p.parent.relative_to(workdir).as_posix() for p in workdir.glob("runs/*/*/seed*/train.json"))
    verification = [run for run in runs if run.startswith("runs/demo_verification/")]
    assert len(runs) > len(verification) > 0

    # each run's scores.json: the metrics its table shows, without per-fold spreads, identifiers or provenance
    scores = {run: json.loads((workdir / run / "evaluation" / "scores.json").read_text()) for run in runs}
    for run in runs:
        record = json.loads((workdir / run / "evaluation" / "metrics.json").read_text())
        assert scores[run] == {name: value for name, value in record["metrics"].items() if name != "accuracy_std"}
    assert {"R@1", "MAP@R", "accuracy", "TAR@FAR=0.001"} <= {name for names in scores.values() for name in names}
    # `dvc metrics show`: a header and one short row per run
    rows = _run([dvc, "metrics", "show"], cwd=workdir).stdout.splitlines()
    assert len(rows) == 1 + len(runs) and max(map(len, rows)) < 200, rows
    assert set(rows[0].split()) == {"Path"} | {name for names in scores.values() for name in names}
    assert sorted(row.split()[0] for row in rows[1:]) == [f"{run}/evaluation/scores.json" for run in runs]

    # `dvc plots show`: every run's training curve, every verification run's ROC
    plots = json.loads(_run([dvc, "plots", "show", "--json"], cwd=workdir).stdout)["data"]
    curves = {f"{run}/history.csv": ("iteration", "loss") for run in runs}
    rocs = {f"{run}/evaluation/roc.csv": ("far", "tar") for run in verification}
    assert plots.keys() == curves.keys() | rocs.keys()
    for path, (x, y) in curves.items() | rocs.items():
        content = json.dumps(plots[path][0]["content"])
        assert f'"x": {{"field": "{x}"' in content and f'"field": "{y}"' in content, path

    # `dvc metrics diff` after one run is evaluated with fewer k: that run's dropped metrics, nothing else
    _git_commit(workdir, "demo")
    params["experiments"]["demo_retrieval"]["evaluation"]["ks"] = [1]
    write_params(params, workdir / "params.yaml")
    _run([dvc, "repro", "evaluate_retrieval@CircleLoss-0"], cwd=workdir)
    diff = _run([dvc, "metrics", "diff"], cwd=workdir).stdout.splitlines()
    assert diff[0].split() == ["Path", "Metric", "HEAD", "workspace", "Change"] and max(map(len, diff)) < 200, diff
    changed = "runs/demo_retrieval/CircleLoss/seed0"
    dropped = sorted(row.split() for row in diff[1:])
    assert [(row[0], row[1], row[3]) for row in dropped] == [
        (f"{changed}/evaluation/scores.json", f"R@{k}", "-") for k in (2, 4, 8)
    ]
    assert [float(row[2]) for row in dropped] == pytest.approx([scores[changed][f"R@{k}"] for k in (2, 4, 8)], rel=1e-4)


def test_a_paper_data_set_has_a_dvc_stage_once_placed_outside_the_default_pipeline():
    pipeline = yaml.safe_load((REPO_ROOT / DATA_PIPELINE).read_text())
    stage = pipeline["stages"]["data"]
    assert pipeline["vars"] == [PLACED.name] and stage["matrix"] == {"dataset": "${placed}"}
    assert yaml.safe_load((REPO_ROOT / PLACED).read_text()) == {"placed": []}  # none placed in the repository
    assert stage["wdir"] == ".."  # paths below are relative to the repository root, as the CLI's defaults
    assert stage["deps"] == ["data/raw/${item.dataset}"] and stage["outs"] == ["data/prepared/${item.dataset}"]
    assert stage["cmd"].startswith("circle-repro data prepare ${item.dataset} ")
    assert "--raw data/raw/${item.dataset}" in stage["cmd"] and "--out data/prepared/${item.dataset}" in stage["cmd"]
    # plain `dvc repro` (the root dvc.yaml and what it depends on) needs no placed data set
    demo = str(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])
    names = [name for name, source in load_sources().items() if source.access != "embedded"]
    assert "data/raw" not in demo and not any(f"data/prepared/{name}" in demo for name in names)


@pytest.mark.slow
def test_data_sets_nobody_placed_stay_out_of_dvc_status_and_commit(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    dvc = _dvc_repo(tmp_path)
    assert _run([dvc, "stage", "list", DATA_PIPELINE], cwd=tmp_path).stdout == ""
    status = _run([dvc, "status", DATA_PIPELINE], cwd=tmp_path).stdout
    assert "data@" not in status and "data/raw" not in status
    _run([dvc, "commit", "-f", DATA_PIPELINE], cwd=tmp_path)  # exits 0: nothing of the data sets to record
    (tmp_path / PLACED).write_text(yaml.safe_dump({"placed": ["lfw", "cub200"]}))
    listed = _run([dvc, "stage", "list", DATA_PIPELINE], cwd=tmp_path).stdout
    assert [line.split()[0] for line in listed.splitlines()] == [f"{DATA_PIPELINE.as_posix()}:data@{name}"
                                                                for name in ("lfw", "cub200")]  # fmt: skip


@pytest.mark.slow
def test_dvc_versions_a_placed_data_set(tiny):
    workdir, _ = tiny
    dvc = _dvc_repo(workdir, placed=["lfw"])
    raw = workdir / "data" / "raw" / "lfw"
    raw.mkdir(parents=True)
    build_verification_bin(raw / "lfw.bin", n_pairs=3)
    stage = f"{DATA_PIPELINE.as_posix()}:data@lfw"
    _run([dvc, "repro", stage], cwd=workdir)
    assert len(read_manifest(workdir / "data" / "prepared" / "lfw")) == 6
    lock = yaml.safe_load((workdir / DATA_PIPELINE.with_suffix(".lock")).read_text())["stages"]["data@lfw"]
    assert [d["path"] for d in lock["deps"]] == ["data/raw/lfw"]
    assert [o["path"] for o in lock["outs"]] == ["data/prepared/lfw"]
    assert "up to date" in _run([dvc, "status", stage], cwd=workdir).stdout

    build_verification_bin(raw / "lfw.bin", n_pairs=4)  # another pack placed: the raw data changed
    assert re.search(r"modified:\s+data/raw/lfw", _run([dvc, "status", stage], cwd=workdir).stdout)
    everything = _run([dvc, "status", DATA_PIPELINE], cwd=workdir).stdout  # the sets nobody placed: not a word
    assert everything.splitlines()[0] == f"{DATA_PIPELINE.as_posix()}:data@lfw:" and "cub200" not in everything

    _run([dvc, "commit", "-f", DATA_PIPELINE], cwd=workdir)  # records the new raw pack as it is
    assert "up to date" in _run([dvc, "status", DATA_PIPELINE], cwd=workdir).stdout


@pytest.mark.slow
def test_a_prepared_data_set_goes_through_a_dvc_remote_byte_for_byte(tiny, tmp_path_factory):
    workdir, _ = tiny
    dvc = _dvc_repo(workdir)
    _run([dvc, "repro", "prepare"], cwd=workdir)
    remote = tmp_path_factory.mktemp("remote")
    _run([dvc, "remote", "add", "--default", "team", remote], cwd=workdir)
    _git_commit(workdir, "mnist5k prepared")  # dvc.lock names the prepared files; .dvc/config the remote
    _run([dvc, "push", "prepare"], cwd=workdir)

    clone = tmp_path_factory.mktemp("clone") / "repo"
    _run(["git", "clone", "-q", workdir, clone], cwd=clone.parent)
    assert not (clone / "data" / "prepared" / "mnist5k").exists() and not list((clone / ".dvc").glob("cache/**/*"))
    _run([dvc, "pull", "prepare"], cwd=clone)

    def files(root):
        folder = root / "data" / "prepared" / "mnist5k"
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    assert len(files(workdir)) > 1000 and files(clone) == files(workdir)
    assert "up to date" in _run([dvc, "status", "prepare"], cwd=clone).stdout
