"""Data-parallel set-up: joining the process group of a torchrun or srun launch."""

from __future__ import annotations

import os
import shutil
import subprocess

import torch
import torch.distributed as dist
from mmengine.dist import init_dist

LAUNCHERS = ("none", "pytorch", "slurm")
"""``--launcher``: none (one process), pytorch (torchrun's RANK/WORLD_SIZE/MASTER_ADDR/... variables),
slurm (srun's SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST/...)."""


def _slurm_environment() -> None:
    """torchrun's variables from SLURM's (as mmengine's slurm launcher sets them)."""
    try:
        proc_id, ntasks, node_list = (os.environ[v] for v in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"))
    except KeyError as missing:
        raise ValueError(f"--launcher slurm needs {missing} in the environment: start the job step with srun") from None
    os.environ.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in os.environ:
        if shutil.which("scontrol"):
            hosts = subprocess.run(
                ["scontrol", "show", "hostname", node_list], capture_output=True, text=True, check=True
            ).stdout.split()
            os.environ["MASTER_ADDR"] = hosts[0]
        else:
            os.environ["MASTER_ADDR"] = node_list.split(",")[0]
    os.environ["WORLD_SIZE"] = ntasks
    os.environ["RANK"] = proc_id
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")


def init_distributed(launcher: str) -> None:
    """Join the process group of a ``pytorch`` (torchrun) or ``slurm`` launch; nothing for ``none``.

    On GPUs this is mmengine's ``init_dist`` (NCCL, one device per local rank). mmengine's
    launchers call ``torch.cuda.set_device`` unconditionally, so on CPU-only machines the gloo
    group is joined here from the same environment variables. Called before the Runner is
    built, so the Runner finds the group ready (and the ranks can coordinate before that).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; allowed: {list(LAUNCHERS)}")
    if launcher == "none" or (dist.is_available() and dist.is_initialized()):
        return
    if torch.cuda.is_available():
        init_dist(launcher, backend="nccl")
        return
    if launcher == "slurm":
        _slurm_environment()
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ValueError(f"--launcher {launcher} needs {missing} in the environment: start the processes with torchrun")
    os.environ.setdefault("LOCAL_RANK", "0")
    dist.init_process_group(backend="gloo")
