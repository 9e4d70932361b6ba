"""profiles/slurm against stub SLURM commands: what is submitted, and that the workflow finishes.

The stubs (sbatch, squeue, sacct, sacctmgr, sshare, scancel, sinfo, scontrol, srun, and torchrun)
lie in a temporary folder put first on PATH. Each appends its argv to calls.jsonl. ``sbatch`` runs
the submitted ``--wrap`` command (or stdin script) synchronously, as the job would run, and prints
the job id as ``sbatch --parsable`` does; ``sacct``/``squeue`` then report each job as COMPLETED or
FAILED (by its exit status) in the ``id|STATE`` format the plugin parses. ``srun`` drops its
options and runs the step. ``torchrun`` records its argv and runs the same CLI module in one
process without ``--launcher pytorch``, so a 2-GPU experiment produces real outputs on the CPU
and the real torchrun never runs here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import REPO_ROOT, tiny_params, write_params

VENV_BIN = Path(sys.executable).parent
ACCOUNT = "circle_test"  # what the stub sacct guesses and sacctmgr accepts
DEFAULT_PARTITION = "standard"  # what the stub sinfo marks as the default

STUB = r'''
import fcntl
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["STUB_STATE"])
NAME = Path(sys.argv[0]).name
ARGS = sys.argv[1:]


def record(**extra):
    with open(STATE / "calls.jsonl", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps({"cmd": NAME, "argv": ARGS, **extra}) + "\n")


def option(name):
    for i, arg in enumerate(ARGS):
        if arg == name and i + 1 < len(ARGS):
            return ARGS[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def jobs():
    return [json.loads(p.read_text()) for p in sorted((STATE / "jobs").glob("*.json"))]


def new_job_id():
    with open(STATE / "jobid.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        last = int(fh.read() or 1000)
        fh.seek(0)
        fh.truncate()
        fh.write(str(last + 1))
    return str(last + 1)


def sbatch():
    job_id = new_job_id()
    record(job_id=job_id)
    wrap = option("--wrap")
    script = sys.stdin.read() if wrap is None else None
    job = {"id": job_id, "name": option("--job-name"), "comment": option("--comment"), "state": "RUNNING"}
    job_file = STATE / "jobs" / f"{job_id}.json"
    job_file.parent.mkdir(exist_ok=True)
    job_file.write_text(json.dumps(job))
    env = dict(os.environ, SLURM_JOB_ID=job_id, SLURM_JOBID=job_id)
    gpus = option("--gpus")
    if gpus:
        env["SLURM_GPUS"] = gpus
    log = Path(option("--output").replace("%j", job_id))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        command = ["/bin/sh", "-c", wrap] if wrap is not None else ["/bin/sh", "-s"]
        result = subprocess.run(command, input=script, text=True, cwd=option("-D"), env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    job.update(state="COMPLETED" if result.returncode == 0 else "FAILED", exit=result.returncode)
    job_file.write_text(json.dumps(job))
    print(job_id)


def status_lines(name):
    for job in jobs():
        if name is None or job["name"] == name:
            print(f"{job['id']}|{job['state']}")


def srun():
    rest = list(ARGS)
    while rest and rest[0].startswith("-"):
        rest.pop(0)
    record()
    os.execvp(rest[0], rest)


def torchrun():
    record()
    module = ARGS.index("-m")
    args = ARGS[module + 2:]
    if "--launcher" in args:
        at = args.index("--launcher")
        del args[at:at + 2]
    os.execv(sys.executable, [sys.executable, "-m", ARGS[module + 1], *args])


def main():
    if NAME == "sbatch":
        return sbatch()
    if NAME == "srun":
        return srun()
    if NAME == "torchrun":
        return torchrun()
    record()
    if NAME == "sacct":
        if "--name" in ARGS:
            return status_lines(option("--name"))
        if "Account%256" in ARGS:
            return print(os.environ["STUB_ACCOUNT"])
        return None  # job step reasons, node lists: nothing to say
    if NAME == "squeue":
        return status_lines(option("--name"))
    if NAME in ("sacctmgr", "sshare"):
        return print(os.environ["STUB_ACCOUNT"])
    if NAME == "sinfo":
        return print(f"PARTITION\n{os.environ['STUB_PARTITION']}*\ngpu\ncpu")
    if NAME == "scontrol":
        if ARGS[:2] == ["show", "config"]:
            return print("MinJobAge               = 300 sec\nMaxArraySize            = 1001")
        sys.exit(1)
    return None  # scancel


main()
'''

KILL_FIRST_TRAIN = r"""#!/usr/bin/env bash
# circle-repro stand-in: the first `train` is killed (SIGKILL, as a pre-empted job's process would
# be) as soon as its first checkpoint is on disk; every other call runs the real CLI.
real="$CIRCLE_REPRO_REAL"
if [ "$1" != train ] || [ -e "$STUB_STATE/killed" ]; then exec "$real" "$@"; fi
out=""
prev=""
for arg in "$@"; do [ "$prev" = --out ] && out="$arg"; prev="$arg"; done
touch "$STUB_STATE/killed"
"$real" "$@" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    checkpoint=$(ls "$out"/work/epoch_*.pth 2>/dev/null | head -n 1)
    if [ -n "$checkpoint" ]; then
        kill -9 "$pid"
        wait "$pid"
        echo "stub: killed after checkpoint $checkpoint"
        exit 137
    fi
    sleep 0.01
done
wait "$pid"
echo "stub: training ended before a checkpoint was seen" >&2
exit 3
"""

STUB_COMMANDS = ("sbatch", "squeue", "sacct", "sacctmgr", "sshare", "scancel", "sinfo", "scontrol", "srun", "torchrun")


def _stub_bin(root: Path) -> Path:
    bin_dir = root / "stub-bin"
    bin_dir.mkdir()
    for name in STUB_COMMANDS:
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{STUB}")
        path.chmod(0o755)
    (root / "state").mkdir()
    return bin_dir


def _project(root: Path, params: dict[str, Any]) -> Path:
    """A copy of the workflow files (Snakefile, rules, profiles) with its own params.yaml."""
    project = root / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "Snakefile", project / "Snakefile")
    shutil.copytree(REPO_ROOT / "workflow", project / "workflow")
    shutil.copytree(REPO_ROOT / "profiles", project / "profiles")
    write_params(params, project / "params.yaml")
    return project


def _env(root: Path, bin_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    return env | {
        "PATH": os.pathsep.join([str(bin_dir), str(VENV_BIN), os.environ["PATH"]]),
        "STUB_STATE": str(root / "state"),
        "STUB_ACCOUNT": ACCOUNT,
        "STUB_PARTITION": DEFAULT_PARTITION,
        "CIRCLE_REPRO_REAL": str(VENV_BIN / "circle-repro"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
    }


def _snakemake_slurm(project: Path, env: dict[str, str], *targets: str) -> subprocess.CompletedProcess:
    args = [
        str(VENV_BIN / "snakemake"), "--profile", "profiles/slurm",
        # poll the stubs every second instead of a real cluster's tens of seconds
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--slurm-keep-successful-logs", *targets,
    ]  # fmt: skip
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{output}")
    return result


def _calls(root: Path, command: str) -> list[list[str]]:
    lines = (root / "state" / "calls.jsonl").read_text().splitlines()
    return [call["argv"] for call in map(json.loads, lines) if call["cmd"] == command]


def _value(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in an argv, as ``name value`` or ``name=value``."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _submissions(root: Path) -> dict[str, list[list[str]]]:
    """sbatch argvs by job comment (``rule_<rule>[_wildcards_<values>]``)."""
    by_comment: dict[str, list[list[str]]] = {}
    for argv in _calls(root, "sbatch"):
        by_comment.setdefault(_value(argv, "--comment"), []).append(argv)
    return by_comment


def _slurm_params(repo_params: dict[str, Any]) -> dict[str, Any]:
    """The demo profile cut to one loss per experiment; retrieval on CPU, verification on 2 GPUs."""
    params = tiny_params(repo_params, epochs=1, max_images=200)
    retrieval, verification = params["experiments"]["demo_retrieval"], params["experiments"]["demo_verification"]
    retrieval["losses"] = {"CircleLoss": retrieval["losses"]["CircleLoss"]}
    verification["losses"] = {"CircleLoss": verification["losses"]["CircleLoss"]}
    retrieval["resources"] = {"cpus_per_gpu": 2, "mem_mb_per_gpu": 3000, "runtime_min": 20, "partition": "cpu"}
    verification["resources"] = {
        "gpus": 2, "cpus_per_gpu": 3, "mem_mb_per_gpu": 5000, "runtime_min": 90, "partition": "gpu"
    }  # fmt: skip
    params["profiles"]["demo"]["experiments"] = ["demo_retrieval", "demo_verification"]
    return params


def test_slurm_profile_dry_run_shows_the_launch_lines_without_slurm_installed(tmp_path, repo_params):
    """On a machine without SLURM (no stubs on PATH) the profile still loads and plans every job."""
    project = _project(tmp_path, _slurm_params(repo_params))
    env = _env(tmp_path, tmp_path / "no-stubs")
    result = subprocess.run(
        [str(VENV_BIN / "snakemake"), "--profile", "profiles/slurm", "--dry-run", "--printshellcmds"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    blocks = result.stdout.split("rule train:")[1:]
    jobs = {block.split("wildcards: ", 1)[1].split("\n", 1)[0]: block for block in blocks}
    gpu = jobs["experiment=demo_verification, loss=CircleLoss, seed=0"]
    cpu = jobs["experiment=demo_retrieval, loss=CircleLoss, seed=0"]
    assert "torchrun --standalone --nproc_per_node=2 -m circle_repro.cli train --params params.yaml" in gpu
    assert "--out $(dirname runs/demo_verification/CircleLoss/seed0/model.pth) --launcher pytorch > logs/" in gpu
    assert "gpu=2" in gpu and "slurm_partition=gpu" in gpu and "cpus_per_task=6" in gpu and "mem_mb=10000" in gpu
    assert "OMP_NUM_THREADS=1 circle-repro train --params params.yaml" in cpu and "--launcher" not in cpu
    assert "slurm_partition=cpu" in cpu and "gpu=" not in cpu and "runtime=20" in cpu


@pytest.mark.slow
def test_slurm_profile_submits_declared_resources_and_finishes(tmp_path, repo_params):
    bin_dir = _stub_bin(tmp_path)
    project = _project(tmp_path, _slurm_params(repo_params))
    _snakemake_slurm(project, _env(tmp_path, bin_dir))

    assert (project / "reports" / "report.md").is_file() and (project / "reports" / "report.html").is_file()
    jobs = _submissions(tmp_path)
    cpu_train = jobs.pop("rule_train_wildcards_demo_retrieval_CircleLoss_0")
    gpu_train = jobs.pop("rule_train_wildcards_demo_verification_CircleLoss_0")
    assert len(cpu_train) == len(gpu_train) == 1, "each training job is submitted once"
    cpu_train, gpu_train = cpu_train[0], gpu_train[0]

    for argv in (cpu_train, gpu_train):
        assert _value(argv, "-A") == ACCOUNT and "--parsable" in argv and _value(argv, "--nodes") == "1"
    assert (_value(cpu_train, "-p"), _value(cpu_train, "-t"), _value(cpu_train, "--mem")) == ("cpu", "20", "3000")
    assert _value(cpu_train, "--cpus-per-task") == "2" and _value(cpu_train, "--ntasks") == "1"
    assert _value(cpu_train, "--gpus") is None
    assert (_value(gpu_train, "-p"), _value(gpu_train, "-t"), _value(gpu_train, "--mem")) == ("gpu", "90", "10000")
    assert _value(gpu_train, "--gpus") == "2" and _value(gpu_train, "--cpus-per-task") == "6"
    assert _value(gpu_train, "--ntasks-per-gpu") is None, "torchrun is one task that starts one process per GPU"

    # The CPU-only steps: their declared resources, and the cluster's default partition.
    steps = {comment.split("_wildcards_")[0]: argvs[0] for comment, argvs in jobs.items()}
    assert set(steps) == {"rule_prepare_data", "rule_evaluate", "rule_report"}
    for rule, runtime, mem in (("prepare_data", "60", "4000"), ("evaluate", "30", "8000"), ("report", "30", "4000")):
        argv = steps[f"rule_{rule}"]
        assert (_value(argv, "-p"), _value(argv, "-t"), _value(argv, "--mem")) == (DEFAULT_PARTITION, runtime, mem)
        assert _value(argv, "--cpus-per-task") == "1"

    (torchrun,) = _calls(tmp_path, "torchrun")
    assert torchrun[:4] == ["--standalone", "--nproc_per_node=2", "-m", "circle_repro.cli"]
    assert torchrun[4] == "train" and torchrun[-2:] == ["--launcher", "pytorch"]
    assert "--run" in torchrun and "demo_verification/CircleLoss/seed0" in torchrun
    assert any("--gpus=2" in argv for argv in _calls(tmp_path, "srun")), "the job step gets the GPUs too"
    for run in ("demo_retrieval", "demo_verification"):
        assert (project / "runs" / run / "CircleLoss" / "seed0" / "metrics.json").is_file()


@pytest.mark.slow
def test_killed_training_job_is_resubmitted_and_resumes_from_its_checkpoint(tmp_path, repo_params):
    params = tiny_params(repo_params, epochs=3, max_images=1200)  # 3 epochs of 15 iterations
    experiment = params["experiments"]["demo_retrieval"]
    experiment["losses"] = {"CircleLoss": experiment["losses"]["CircleLoss"]}
    params["experiments"] = {"demo_retrieval": experiment}
    params["profiles"] = {"demo": {**params["profiles"]["demo"], "experiments": ["demo_retrieval"]}}
    params.pop("sweeps")  # they build on the experiments removed above
    bin_dir = _stub_bin(tmp_path)
    (bin_dir / "circle-repro").write_text(KILL_FIRST_TRAIN)
    (bin_dir / "circle-repro").chmod(0o755)
    project = _project(tmp_path, params)
    run_dir = project / "runs" / "demo_retrieval" / "CircleLoss" / "seed0"

    _snakemake_slurm(project, _env(tmp_path, bin_dir), (run_dir / "train.json").relative_to(project).as_posix())

    comment = "rule_train_wildcards_demo_retrieval_CircleLoss_0"
    assert len(_submissions(tmp_path)[comment]) == 2, "the killed job was resubmitted once (profile retries)"
    jobs = [json.loads(path.read_text()) for path in (tmp_path / "state" / "jobs").glob("*.json")]
    attempts = sorted((job for job in jobs if job["comment"] == comment), key=lambda job: int(job["id"]))
    assert [job["state"] for job in attempts] == ["FAILED", "COMPLETED"] and attempts[0]["exit"] != 0

    log = (project / "logs" / "train" / "demo_retrieval" / "CircleLoss" / "seed0.log").read_text()
    assert "resumed epoch:" in log, log[-3000:]
    resumed_epoch = int(log.split("resumed epoch:", 1)[1].split(",", 1)[0])
    assert 1 <= resumed_epoch < 3, "the second attempt continued from the first attempt's checkpoint"
    record = json.loads((run_dir / "train.json").read_text())
    per_epoch = int(log.split("resumed epoch:", 1)[1].split("iter:", 1)[1].split()[0]) // resumed_epoch
    assert record["iterations"] == 3 * per_epoch, "the resumed run ends where an uninterrupted one would"
