"""profiles/slurm against stub SLURM commands: what is submitted, and that the workflow finishes.

The stubs (sbatch, squeue, sacct, sacctmgr, sshare, scancel, sinfo, scontrol, srun, and torchrun)
lie in a temporary folder put first on PATH. Each appends its argv to calls.jsonl. ``sbatch`` queues
the submitted ``--wrap`` command (or stdin script) and prints the job id as ``sbatch --parsable``
does; a detached runner per job waits for one of STUB_SLOTS slots (PENDING), runs the job (RUNNING)
and records COMPLETED or FAILED by its exit status, so jobs queue and run concurrently as on a small
cluster. ``scancel`` kills a job's processes and marks it CANCELLED. ``squeue`` reports every job of
a run in the ``id|STATE`` format the plugin parses; ``sacct`` does too but, as SLURM's sacct does,
says ``CANCELLED by <uid>`` for a cancelled job, rejects the plugin's account guess
(``sacct ... | tail -1`` passed as arguments), and with STUB_SACCT_DISABLED fails as on a cluster
without job accounting. ``srun`` drops its options and runs the step. ``torchrun`` records its argv
and runs the same CLI module in one process without ``--launcher pytorch``, so a 2-GPU experiment
produces real outputs on the CPU and the real torchrun never runs here.
(tests/test_slurm_real.py runs the profile on a real SLURM cluster.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_support import VENV_BIN, argv_value, attempt_logs, copy_project
from support import REPO_ROOT, tiny_params

ACCOUNT = "circle_test"  # the account sacctmgr accepts
DEFAULT_PARTITION = "standard"  # what the stub sinfo marks as the default

STUB = r"""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
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


@contextmanager
def locked(name):
    with open(STATE / name, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield fh


def jobs():
    with locked("jobs.lock"):
        return [json.loads(p.read_text()) for p in sorted((STATE / "jobs").glob("*.json"))]


def update_job(job_id, unless_state=None, **changes):
    # Change a job's record unless it is already in ``unless_state``; return the record.
    with locked("jobs.lock"):
        path = STATE / "jobs" / f"{job_id}.json"
        job = json.loads(path.read_text())
        if job["state"] != unless_state:
            job.update(changes)
            path.write_text(json.dumps(job))
        return job


def new_job_id():
    with locked("jobid.lock") as fh:
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
    job = {
        "id": job_id, "name": option("--job-name"), "comment": option("--comment"), "state": "PENDING",
        "command": ["/bin/sh", "-c", wrap] if wrap is not None else ["/bin/sh", "-s"],
        "script": sys.stdin.read() if wrap is None else None, "cwd": option("-D"), "gpus": option("--gpus"),
        "output": option("--output").replace("%j", job_id), "append": option("--open-mode") == "append",
    }
    (STATE / "jobs").mkdir(exist_ok=True)
    with locked("jobs.lock"):
        (STATE / "jobs" / f"{job_id}.json").write_text(json.dumps(job))
    subprocess.Popen([sys.argv[0]], env=dict(os.environ, STUB_RUN_JOB=job_id), start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(job_id)


def take_slot():
    # Block until one of STUB_SLOTS slots is free; the slot is held while the returned file is open.
    while True:
        for slot in range(int(os.environ.get("STUB_SLOTS", "2"))):
            fh = open(STATE / f"slot{slot}.lock", "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                fh.close()
        time.sleep(0.1)


def run_job(job_id):
    slot = take_slot()
    job = update_job(job_id, unless_state="CANCELLED", state="RUNNING")
    if job["state"] == "CANCELLED":
        return
    env = dict(os.environ, SLURM_JOB_ID=job_id, SLURM_JOBID=job_id)
    env.pop("STUB_RUN_JOB")
    if job["gpus"]:
        env["SLURM_GPUS"] = job["gpus"]
    log = Path(job["output"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a" if job["append"] else "w") as out:
        proc = subprocess.Popen(job["command"], stdin=subprocess.PIPE, text=True, cwd=job["cwd"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        update_job(job_id, pgid=proc.pid)
        proc.communicate(job["script"])
    state = "COMPLETED" if proc.returncode == 0 else "FAILED"
    update_job(job_id, unless_state="CANCELLED", state=state, exit=proc.returncode)
    slot.close()


def scancel():
    for job_id in (arg for arg in ARGS if arg.isdigit()):
        job = update_job(job_id, unless_state="COMPLETED", state="CANCELLED")
        if job["state"] == "CANCELLED" and job.get("pgid"):
            try:
                os.killpg(job["pgid"], signal.SIGKILL)  # last: the caller may be one of the job's processes
            except ProcessLookupError:
                pass


def status_lines(name, cancelled):
    for job in jobs():
        if name is None or job["name"] == name:
            print(f"{job['id']}|{cancelled if job['state'] == 'CANCELLED' else job['state']}")


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


def sacct():
    if os.environ.get("STUB_SACCT_DISABLED"):
        sys.exit("Slurm accounting storage is disabled")
    if "-1" in ARGS:  # `sacct ... | tail -1` without a shell: getopt rejects it, as SLURM's sacct does
        sys.exit("sacct: invalid option -- '1'")
    if "--name" in ARGS:
        return status_lines(option("--name"), cancelled=f"CANCELLED by {os.getuid()}")
    return None  # job step reasons, node lists: nothing to say


def main():
    if os.environ.get("STUB_RUN_JOB"):
        return run_job(os.environ["STUB_RUN_JOB"])
    if NAME == "sbatch":
        return sbatch()
    if NAME == "srun":
        return srun()
    if NAME == "torchrun":
        return torchrun()
    record()
    if NAME == "scancel":
        return scancel()
    if NAME == "sacct":
        return sacct()
    if NAME == "squeue":
        return status_lines(option("--name"), cancelled="CANCELLED")
    if NAME in ("sacctmgr", "sshare"):
        return print(os.environ["STUB_ACCOUNT"])
    if NAME == "sinfo":
        return print(f"PARTITION\n{os.environ['STUB_PARTITION']}*\ngpu\ncpu")
    if NAME == "scontrol":
        if ARGS[:2] == ["show", "config"]:
            return print("MinJobAge               = 300 sec\nMaxArraySize            = 1001")
        sys.exit(1)
    return None


main()
"""

INTERRUPT_FIRST_TRAIN = r"""#!/usr/bin/env bash
# circle-repro stand-in: the first `train` is interrupted as soon as its first checkpoint is on disk:
# STUB_INTERRUPT=kill kills it (SIGKILL, as a pre-empted job's process would be), =cancel cancels its
# job (scancel, which kills the job's processes, this one included). Every other call runs the real CLI.
real="$CIRCLE_REPRO_REAL"
if [ "$1" != train ] || [ -e "$STUB_STATE/interrupted" ]; then exec "$real" "$@"; fi
out=""
prev=""
for arg in "$@"; do [ "$prev" = --out ] && out="$arg"; prev="$arg"; done
touch "$STUB_STATE/interrupted"
"$real" "$@" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    checkpoint=$(ls "$out/work/"epoch_*.pth 2>/dev/null | head -n 1)
    if [ -n "$checkpoint" ]; then
        echo "stub: $STUB_INTERRUPT after checkpoint $checkpoint"
        [ "$STUB_INTERRUPT" = cancel ] && scancel "$SLURM_JOB_ID" && sleep 60
        kill -9 "$pid"
        wait "$pid"
        exit 137
    fi
    sleep 0.01
done
wait "$pid"
echo "stub: training ended before a checkpoint was seen" >&2
exit 3
"""

STUB_COMMANDS = ("sbatch", "squeue", "sacct", "sacctmgr", "sshare", "scancel", "sinfo", "scontrol", "srun", "torchrun")
SNAKEMAKE_TIMEOUT_S = 600  # a hung workflow fails the test instead of hanging it


def _stub_bin(root: Path) -> Path:
    bin_dir = root / "stub-bin"
    bin_dir.mkdir()
    for name in STUB_COMMANDS:
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{STUB}")
        path.chmod(0o755)
    (root / "state").mkdir()
    return bin_dir


def _env(root: Path, bin_dir: Path, **stub_settings: str) -> dict[str, str]:
    inherited = ("SLURM_", "SBATCH_", "SRUN_", "MLFLOW_TRACKING_URI")  # the jobs log to the project's own store
    env = {key: value for key, value in os.environ.items() if not key.startswith(inherited)}
    return (
        env
        | stub_settings
        | {
            "PATH": os.pathsep.join([str(bin_dir), str(VENV_BIN), os.environ["PATH"]]),
            "STUB_STATE": str(root / "state"),
            "STUB_ACCOUNT": ACCOUNT,
            "STUB_PARTITION": DEFAULT_PARTITION,
            "CIRCLE_REPRO_REAL": str(VENV_BIN / "circle-repro"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DVC_NO_ANALYTICS": "1",
        }
    )


def _snakemake_slurm(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    args = (
        str(VENV_BIN / "snakemake"), "--profile", "profiles/slurm",
        # poll the stubs every second instead of a real cluster's tens of seconds
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--slurm-keep-successful-logs", *args,
    )  # fmt: skip
    try:
        result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        output = f"{(error.stdout or b'')[-6000:]!r}\n{(error.stderr or b'')[-6000:]!r}"
        raise AssertionError(f"snakemake did not finish within {SNAKEMAKE_TIMEOUT_S} s:\n{output}") from None
    if result.returncode != 0:
        output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{output}")
    return result


def _calls(root: Path, command: str) -> list[list[str]]:
    lines = (root / "state" / "calls.jsonl").read_text().splitlines()
    return [call["argv"] for call in map(json.loads, lines) if call["cmd"] == command]


def _submissions(root: Path) -> dict[str, list[list[str]]]:
    """sbatch argvs by job comment (``rule_<rule>[_wildcards_<values>]``)."""
    by_comment: dict[str, list[list[str]]] = {}
    for argv in _calls(root, "sbatch"):
        by_comment.setdefault(argv_value(argv, "--comment"), []).append(argv)
    return by_comment


def _stub_jobs(root: Path, comment: str) -> list[dict[str, Any]]:
    """The stub's records of the jobs with one comment, in submission order."""
    jobs = [json.loads(path.read_text()) for path in (root / "state" / "jobs").glob("*.json")]
    return sorted((job for job in jobs if job["comment"] == comment), key=lambda job: int(job["id"]))


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
    params["sweeps"].pop("demo_sensitivity")  # its baselines are among the losses removed above
    return params


def test_slurm_profile_dry_run_shows_the_launch_lines_without_slurm_installed(tmp_path, repo_params):
    """On a machine without SLURM (no stubs on PATH) the profile still loads and plans every job."""
    project = copy_project(tmp_path, _slurm_params(repo_params))
    env = _env(tmp_path, tmp_path / "no-stubs")
    result = subprocess.run(
        [str(VENV_BIN / "snakemake"), "--profile", "profiles/slurm", "--dry-run", "--printshellcmds"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    blocks = result.stdout.split("rule train:")[1:]
    blocks = [block.split("\nrule ", 1)[0] for block in blocks]  # each train job up to the next job
    jobs = {block.split("wildcards: ", 1)[1].split("\n", 1)[0]: block for block in blocks}
    gpu = jobs["experiment=demo_verification, loss=CircleLoss, seed=0"]
    cpu = jobs["experiment=demo_retrieval, loss=CircleLoss, seed=0"]
    assert "torchrun --standalone --nproc_per_node=2 -m circle_repro.cli train --params params.yaml" in gpu
    assert "--out $(dirname runs/demo_verification/CircleLoss/seed0/model.pth) --launcher pytorch 2>&1 | tee " in gpu
    assert "gpu=2" in gpu and "slurm_partition=gpu" in gpu and "cpus_per_task=6" in gpu and "mem_mb=10000" in gpu
    assert "OMP_NUM_THREADS=1 circle-repro train --params params.yaml" in cpu and "--launcher" not in cpu
    assert "slurm_partition=cpu" in cpu and "gpu=" not in cpu and "runtime=20" in cpu


def test_slurm_profile_reads_job_states_with_squeue():
    """sacct fails without job accounting and says `CANCELLED by <uid>`, which the pinned plugin
    takes for a running job: the profile must not leave the choice to the plugin."""
    profile = yaml.safe_load((REPO_ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["slurm-status-command"] == "squeue"


@pytest.mark.slow
def test_slurm_profile_submits_declared_resources_and_finishes(tmp_path, repo_params):
    bin_dir = _stub_bin(tmp_path)
    project = copy_project(tmp_path, _slurm_params(repo_params))
    _snakemake_slurm(project, _env(tmp_path, bin_dir))

    assert (project / "reports" / "report.md").is_file() and (project / "reports" / "report.html").is_file()
    jobs = _submissions(tmp_path)
    cpu_train = jobs.pop("rule_train_wildcards_demo_retrieval_CircleLoss_0")
    gpu_train = jobs.pop("rule_train_wildcards_demo_verification_CircleLoss_0")
    assert len(cpu_train) == len(gpu_train) == 1, "each training job is submitted once"
    cpu_train, gpu_train = cpu_train[0], gpu_train[0]

    for argv in (cpu_train, gpu_train):
        assert "--parsable" in argv and argv_value(argv, "--nodes") == "1"
    assert (argv_value(cpu_train, "-p"), argv_value(cpu_train, "-t"), argv_value(cpu_train, "--mem")) == (
        "cpu",
        "20",
        "3000",
    )
    assert argv_value(cpu_train, "--cpus-per-task") == "2" and argv_value(cpu_train, "--ntasks") == "1"
    assert argv_value(cpu_train, "--gpus") is None
    assert (argv_value(gpu_train, "-p"), argv_value(gpu_train, "-t"), argv_value(gpu_train, "--mem")) == (
        "gpu",
        "90",
        "10000",
    )
    assert argv_value(gpu_train, "--gpus") == "2" and argv_value(gpu_train, "--cpus-per-task") == "6"
    assert argv_value(gpu_train, "--ntasks-per-gpu") is None, "torchrun is one task that starts one process per GPU"

    # Evaluation follows its experiment: one GPU with the experiment's CPUs per GPU in its partition,
    # or one CPU in the cluster's default partition.
    cpu_eval = jobs.pop("rule_evaluate_wildcards_demo_retrieval_CircleLoss_0")[0]
    gpu_eval = jobs.pop("rule_evaluate_wildcards_demo_verification_CircleLoss_0")[0]
    assert (argv_value(cpu_eval, "-p"), argv_value(cpu_eval, "--cpus-per-task"), argv_value(cpu_eval, "--gpus")) == (
        DEFAULT_PARTITION, "1", None
    )  # fmt: skip
    assert (argv_value(gpu_eval, "-p"), argv_value(gpu_eval, "--cpus-per-task"), argv_value(gpu_eval, "--gpus")) == (
        "gpu", "3", "1"
    )  # fmt: skip
    for argv in (cpu_eval, gpu_eval):
        assert (argv_value(argv, "-t"), argv_value(argv, "--mem")) == ("30", "8000")

    # The CPU-only steps: their declared resources, and the cluster's default partition.
    steps = {comment.split("_wildcards_")[0]: argvs[0] for comment, argvs in jobs.items()}
    assert set(steps) == {"rule_prepare_data", "rule_report"}
    for rule, runtime, mem in (("prepare_data", "60", "4000"), ("report", "30", "4000")):
        argv = steps[f"rule_{rule}"]
        assert (argv_value(argv, "-p"), argv_value(argv, "-t"), argv_value(argv, "--mem")) == (
            DEFAULT_PARTITION,
            runtime,
            mem,
        )
        assert argv_value(argv, "--cpus-per-task") == "1"

    # No account configured: the plugin's guess fails (sacct rejects it) and sbatch gets no -A.
    submissions = _calls(tmp_path, "sbatch")
    assert all(argv_value(argv, "-A") is None for argv in submissions)
    assert any(argv[-1:] == ["-1"] for argv in _calls(tmp_path, "sacct")), "the plugin's account guess ran"
    assert all("--open-mode=append" in argv for argv in submissions), "a requeued job appends to its SLURM log"

    (torchrun,) = _calls(tmp_path, "torchrun")
    assert torchrun[:4] == ["--standalone", "--nproc_per_node=2", "-m", "circle_repro.cli"]
    assert torchrun[4] == "train" and torchrun[-2:] == ["--launcher", "pytorch"]
    assert "--run" in torchrun and "demo_verification/CircleLoss/seed0" in torchrun
    assert any("--gpus=2" in argv for argv in _calls(tmp_path, "srun")), "the job step gets the GPUs too"
    for run in ("demo_retrieval", "demo_verification"):
        assert (project / "runs" / run / "CircleLoss" / "seed0" / "evaluation" / "metrics.json").is_file()


def _one_training_run(repo_params: dict[str, Any]) -> dict[str, Any]:
    """demo_retrieval, CircleLoss, seed 0: 3 epochs of 15 iterations."""
    params = tiny_params(repo_params, epochs=3, max_images=1200)
    experiment = params["experiments"]["demo_retrieval"]
    experiment["losses"] = {"CircleLoss": experiment["losses"]["CircleLoss"]}
    params["experiments"] = {"demo_retrieval": experiment}
    params["profiles"] = {"demo": {**params["profiles"]["demo"], "experiments": ["demo_retrieval"]}}
    params.pop("sweeps")  # they build on the experiments removed above
    return params


@pytest.mark.slow
@pytest.mark.parametrize(
    ("interrupt", "first_state", "stub_settings"),
    [
        ("kill", "FAILED", {"STUB_SACCT_DISABLED": "1"}),  # a cluster without job accounting: sacct fails
        ("cancel", "CANCELLED", {}),  # sacct would answer `CANCELLED by <uid>`
    ],
)  # fmt: skip
def test_interrupted_training_job_is_resubmitted_and_resumes_from_its_checkpoint(
    tmp_path, repo_params, interrupt, first_state, stub_settings
):
    bin_dir = _stub_bin(tmp_path)
    (bin_dir / "circle-repro").write_text(INTERRUPT_FIRST_TRAIN)
    (bin_dir / "circle-repro").chmod(0o755)
    project = copy_project(tmp_path, _one_training_run(repo_params))
    run_dir = project / "runs" / "demo_retrieval" / "CircleLoss" / "seed0"
    env = _env(tmp_path, bin_dir, STUB_INTERRUPT=interrupt, **stub_settings)
    # the account set explicitly, with the rest of the profile's default resources
    profile = yaml.safe_load((project / "profiles" / "slurm" / "config.yaml").read_text())
    defaults = [f"{name}={value!r}" for name, value in profile["default-resources"].items()]
    target = (run_dir / "train.json").relative_to(project).as_posix()
    _snakemake_slurm(project, env, target, "--default-resources", *defaults, f"slurm_account={ACCOUNT!r}")

    comment = "rule_train_wildcards_demo_retrieval_CircleLoss_0"
    attempts = _stub_jobs(tmp_path, comment)
    assert [job["state"] for job in attempts] == [first_state, "COMPLETED"], "resubmitted once (profile retries)"
    assert all(argv_value(argv, "-A") == ACCOUNT for argv in _calls(tmp_path, "sbatch"))
    assert _calls(tmp_path, "sacctmgr"), "the plugin checked the account"

    first, second = attempt_logs(project, "demo_retrieval/CircleLoss/seed0")
    assert f"stub: {interrupt} after checkpoint" in first and "resumed epoch:" not in first
    assert second == (project / "logs" / "train" / "demo_retrieval" / "CircleLoss" / "seed0.log").read_text()
    resumed_epoch = int(second.split("resumed epoch:", 1)[1].split(",", 1)[0])
    assert 1 <= resumed_epoch < 3, "the second attempt continued from the first attempt's checkpoint"
    record = json.loads((run_dir / "train.json").read_text())
    per_epoch = int(second.split("resumed epoch:", 1)[1].split("iter:", 1)[1].split()[0]) // resumed_epoch
    assert record["iterations"] == 3 * per_epoch, "the resumed run ends where an uninterrupted one would"
