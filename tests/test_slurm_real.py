"""profiles/slurm on a real SLURM cluster: submission, completion and pre-emption, end to end.

Needs a running cluster on this machine (``.ci/slurm-up``, as root: Debian's slurm-wlm 22.05, one
node, no job accounting); every test skips, saying why, when ``scontrol ping`` finds no slurmctld.
Snakemake polls every few seconds here (--slurm-init-seconds-before-status-checks 2), as a small
cluster would be set up; every wait below is bounded.

Pre-emption: as soon as a training run's first epoch checkpoint is on disk, its job is interrupted:
- ``requeue``: ``scontrol requeue`` (SLURM restarts the same job),
- ``cancel``: ``scancel`` (Snakemake resubmits the job: the profile's retries),
- ``timeout``: the training frozen (SIGSTOP, so that it cannot finish first however fast the machine
  is) and the job's end time set to now, so SLURM itself ends it at its time limit (state TIMEOUT;
  slurmctld checks time limits every 30 s).
(A ``kill -9`` of the training is tested with stub commands: tests/test_slurm_profile.py.)
An uninterrupted run of the same settings (another experiment name, the same seed) trains alongside;
each interrupted run must end with exactly its weights, in one finished MLflow run.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slurm_support import VENV_BIN, attempt_logs, copy_project
from support import tiny_params

pytestmark = pytest.mark.slow

WORKFLOW_TIMEOUT_S = 600  # the whole workflow of a test; it is cancelled, and the test fails, beyond
POLL = ("--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2")
MIN_JOB_AGE_S = 180  # the plugin polls squeue at most every 180 s; a finished job must stay listed that long
INTERRUPTIONS = ("requeue", "cancel", "timeout")


def _command(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """Skip unless a slurmctld answers and its node takes jobs; the reason names what is missing."""
    if not Path("/usr/bin/scontrol").exists() and not any(
        (Path(folder) / "scontrol").exists() for folder in os.environ["PATH"].split(os.pathsep)
    ):
        pytest.skip("no SLURM client (scontrol) installed: run .ci/slurm-up as root to install and start SLURM")
    ping = _command("scontrol", "ping")
    if ping.returncode != 0 or " is UP" not in ping.stdout:
        answer = (ping.stdout + ping.stderr).strip().splitlines() or ["no answer"]
        pytest.skip(f"no slurmctld answers `scontrol ping` ({answer[0]}): run .ci/slurm-up as root")
    config = _command("scontrol", "show", "config").stdout
    min_job_age = re.search(r"^MinJobAge\s*=\s*(\d+)", config, flags=re.M)
    if min_job_age is None or int(min_job_age.group(1)) < MIN_JOB_AGE_S:
        pytest.skip(f"the cluster's MinJobAge is below {MIN_JOB_AGE_S} s: squeue would forget finished jobs")
    states = _command("sinfo", "-h", "-o", "%T").stdout.split()
    if not any(state.rstrip("*") in ("idle", "mixed", "allocated") for state in states):
        pytest.skip(f"no SLURM node takes jobs (sinfo states: {states}): see /var/log/slurm/slurmd.log")


def _env() -> dict[str, str]:
    inherited = ("SLURM_", "SBATCH_", "SRUN_", "MLFLOW_TRACKING_URI")  # the jobs log to the project's own store
    env = {key: value for key, value in os.environ.items() if not key.startswith(inherited)}
    return env | {
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ["PATH"]]),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
    }


def _run_uuid(project: Path) -> str | None:
    found = re.search(r"SLURM run ID: (\S+)", (project / "snakemake.log").read_text())
    return found.group(1) if found else None


def _jobs(run_uuid: str) -> list[dict[str, str]]:
    """Every job of one Snakemake run that squeue still lists (finished ones for MinJobAge seconds)."""
    fields = {"id": "%i", "comment": "%k", "state": "%T", "time_limit": "%l", "cpus": "%C", "memory": "%m",
              "partition": "%P"}  # fmt: skip
    out = _command("squeue", "-h", "--states=all", "--name", run_uuid, "-o", "|".join(fields.values())).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]


def _run_workflow(
    project: Path, *targets: str, on_poll: Callable[[dict[str, dict[str, str]]], None] | None = None
) -> dict[str, dict[str, str]]:
    """Run Snakemake with the SLURM profile until it ends (at most WORKFLOW_TIMEOUT_S); every half
    second record its jobs' latest squeue lines (by job id) and call ``on_poll`` with them. On failure
    or timeout its jobs are cancelled and the test fails with Snakemake's output."""
    args = [str(VENV_BIN / "snakemake"), "--profile", "profiles/slurm", *POLL, "--slurm-keep-successful-logs", *targets]
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_S
    jobs: dict[str, dict[str, str]] = {}
    with open(project / "snakemake.log", "w") as log:
        proc = subprocess.Popen(args, cwd=project, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                run_uuid = _run_uuid(project)
                if run_uuid:
                    jobs |= {job["id"]: job for job in _jobs(run_uuid)}
                    if on_poll:
                        on_poll(jobs)
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            run_uuid = _run_uuid(project)
            if run_uuid:
                jobs |= {job["id"]: job for job in _jobs(run_uuid)}
                _command("scancel", "--name", run_uuid)  # nothing of a failed run keeps running
    output = (project / "snakemake.log").read_text()
    if proc.returncode != 0:
        raise AssertionError(
            f"snakemake ended with {proc.returncode} (limit {WORKFLOW_TIMEOUT_S} s):\n{output[-8000:]}"
        )
    return jobs


# --- submit, complete, report -------------------------------------------------------------------


def _e2e_params(repo_params: dict[str, Any]) -> dict[str, Any]:
    """The demo cut to one loss per experiment, both trained on the CPU with their own resources."""
    params = tiny_params(repo_params, epochs=1, max_images=200)
    retrieval, verification = params["experiments"]["demo_retrieval"], params["experiments"]["demo_verification"]
    retrieval["losses"] = {"CircleLoss": retrieval["losses"]["CircleLoss"]}
    verification["losses"] = {"CircleLoss": verification["losses"]["CircleLoss"]}
    retrieval["resources"] = {"cpus_per_gpu": 2, "mem_mb_per_gpu": 3000, "runtime_min": 20}
    verification["resources"] = {"cpus_per_gpu": 1, "mem_mb_per_gpu": 2500, "runtime_min": 15}
    params["profiles"]["demo"]["experiments"] = ["demo_retrieval", "demo_verification"]
    params["sweeps"].pop("demo_sensitivity")  # its baselines are among the losses removed above
    return params


def test_slurm_profile_runs_the_demo_on_a_real_cluster(slurm_cluster, tmp_path, repo_params):
    project = copy_project(tmp_path, _e2e_params(repo_params))
    jobs = _run_workflow(project)

    assert (project / "reports" / "report.md").is_file() and (project / "reports" / "report.html").is_file()
    assert "| CircleLoss |" in (project / "reports" / "report.md").read_text()
    jobs = {job["comment"]: job for job in jobs.values()}
    assert len(jobs) == 6 and {job["state"] for job in jobs.values()} == {"COMPLETED"}, jobs
    expected = {  # comment -> (time limit, CPUs, memory), as params.yaml and circle_repro.workflow declare
        "rule_prepare_data_wildcards_mnist5k": ("1:00:00", "1", "4000M"),
        "rule_train_wildcards_demo_retrieval_CircleLoss_0": ("20:00", "2", "3000M"),
        "rule_train_wildcards_demo_verification_CircleLoss_0": ("15:00", "1", "2500M"),
        "rule_evaluate_wildcards_demo_retrieval_CircleLoss_0": ("30:00", "1", "8000M"),
        "rule_evaluate_wildcards_demo_verification_CircleLoss_0": ("30:00", "1", "8000M"),
        "rule_report": ("30:00", "1", "4000M"),
    }
    assert {comment: (job["time_limit"], job["cpus"], job["memory"]) for comment, job in jobs.items()} == expected
    assert {job["partition"] for job in jobs.values()} == {_default_partition()}


def _default_partition() -> str:
    partitions = _command("sinfo", "-h", "-o", "%P").stdout.split()
    return next(name.rstrip("*") for name in partitions if name.endswith("*"))


# --- pre-emption --------------------------------------------------------------------------------


def _preemption_params(repo_params: dict[str, Any]) -> dict[str, Any]:
    """demo_retrieval (CircleLoss, seed 0, 3 epochs of 10 iterations) under one experiment name per
    interruption plus ``uninterrupted``: the same settings, hence the same weights."""
    params = tiny_params(repo_params, epochs=3, max_images=800)
    experiment = params["experiments"]["demo_retrieval"]
    experiment["losses"] = {"CircleLoss": experiment["losses"]["CircleLoss"]}
    experiment["resources"] = {"runtime_min": 10, "mem_mb_per_gpu": 2000}
    names = ["uninterrupted", *INTERRUPTIONS]
    params["experiments"] = {name: copy.deepcopy(experiment) for name in names}
    params["profiles"] = {"demo": {**params["profiles"]["demo"], "experiments": names}}
    params.pop("sweeps")  # they build on the experiments replaced above
    return params


def _training_pid(run: str) -> int | None:
    """The training process of ``run`` (``experiment/loss/seedN``) on this machine, if it is running."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone, or not a process folder
            continue
        words = [arg.decode(errors="replace") for arg in argv]
        if (
            "train" in words
            and run in words
            and any(word.endswith("python") or "python3" in word for word in words[:1])
        ):
            return int(proc.name)
    return None


def _interrupt(how: str, job_id: str, pid: int) -> None:
    """Interrupt the job of training process ``pid`` ``how``."""
    if how == "timeout":
        os.kill(pid, signal.SIGSTOP)
    command = {
        "requeue": ["scontrol", "requeue", job_id],
        "cancel": ["scancel", job_id],
        "timeout": ["scontrol", "update", f"JobId={job_id}", "EndTime=now"],
    }[how]
    result = _command(*command)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def preempted(slurm_cluster, tmp_path_factory, repo_params) -> dict[str, Any]:
    """One workflow of five training jobs; four are interrupted after their first checkpoint."""
    project = copy_project(tmp_path_factory.mktemp("preemption"), _preemption_params(repo_params))
    targets = [f"runs/{name}/CircleLoss/seed0/train.json" for name in ("uninterrupted", *INTERRUPTIONS)]
    interrupted: dict[str, str] = {}  # how -> the SLURM job interrupted

    def interrupt_after_first_checkpoint(jobs: dict[str, dict[str, str]]) -> None:
        running = {job["comment"]: job["id"] for job in jobs.values() if job["state"] == "RUNNING"}
        for how in INTERRUPTIONS:
            run = f"{how}/CircleLoss/seed0"
            if how in interrupted or not any((project / "runs" / run / "work").glob("*_*.pth")):
                continue
            job_id, pid = running.get(f"rule_train_wildcards_{how}_CircleLoss_0"), _training_pid(run)
            if job_id and pid:
                _interrupt(how, job_id, pid)
                interrupted[how] = job_id

    jobs = _run_workflow(project, *targets, on_poll=interrupt_after_first_checkpoint)
    assert set(interrupted) == set(INTERRUPTIONS), f"interrupted only {interrupted}"
    return {"project": project, "interrupted": interrupted, "jobs": list(jobs.values())}


def _weights(project: Path, experiment: str) -> dict[str, Any]:
    import torch

    return torch.load(project / "runs" / experiment / "CircleLoss" / "seed0" / "model.pth", weights_only=True)


def _mlflow_runs(project: Path, experiment: str) -> list[str]:
    """The statuses of the MLflow runs of one training run."""
    with sqlite3.connect(project / "mlflow.db") as db:
        rows = db.execute(
            "SELECT runs.status FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid"
            " WHERE tags.key = 'run_id' AND tags.value = ?",
            (f"{experiment}/CircleLoss/seed0",),
        ).fetchall()
    return [status for (status,) in rows]


@pytest.mark.parametrize("how", INTERRUPTIONS)
def test_interrupted_training_resumes_to_the_uninterrupted_weights(preempted, how):
    project, job_id = preempted["project"], preempted["interrupted"][how]
    train_jobs = [job for job in preempted["jobs"] if job["comment"] == f"rule_train_wildcards_{how}_CircleLoss_0"]
    if how == "requeue":  # SLURM ran the same job again: one job, restarted once
        assert [(job["id"], job["state"]) for job in train_jobs] == [(job_id, "COMPLETED")], train_jobs
    else:  # Snakemake submitted a new job after the interrupted one ended
        first_state = {"cancel": "CANCELLED", "timeout": "TIMEOUT"}[how]
        states = sorted((int(job["id"]), job["state"]) for job in train_jobs)
        assert states[0] == (int(job_id), first_state) and [state for _, state in states[1:]] == ["COMPLETED"], states

    attempts = attempt_logs(project, f"{how}/CircleLoss/seed0")
    assert len(attempts) == 2, f"one log per attempt: {len(attempts)}"
    assert "resumed epoch:" not in attempts[0] and "resumed epoch:" in attempts[1], attempts[1][-3000:]
    resumed_epoch = int(attempts[1].split("resumed epoch:", 1)[1].split(",", 1)[0])
    assert 1 <= resumed_epoch < 3, "the second attempt continued from the first attempt's checkpoint"

    reference, resumed = _weights(project, "uninterrupted"), _weights(project, how)
    assert reference.keys() == resumed.keys()
    differing = [name for name in reference if not (reference[name] == resumed[name]).all()]
    assert not differing, f"weights differ from the uninterrupted run's: {differing}"
    assert _mlflow_runs(project, how) == ["FINISHED"], "one MLflow run across the attempts, finished"
