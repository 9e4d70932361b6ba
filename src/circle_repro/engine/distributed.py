"""Data-parallel set-up: joining the process group of a torchrun or srun launch, and the Runner that leaves
rank-local state alone."""

from __future__ import annotations

import os
import shutil
import subprocess

import torch
import torch.distributed as dist
from mmengine.dist import broadcast, init_dist
from mmengine.runner import Runner

from circle_repro.engine.checkpoint import unwrap_model

LAUNCHERS = ("none", "pytorch", "slurm")
"""``--launcher``: none (one process), pytorch (torchrun's RANK/WORLD_SIZE/MASTER_ADDR/... variables),
slurm (srun's SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST/...)."""


class TrainRunner(Runner):
    """mmengine's Runner, except that rank-local state is not broadcast from rank 0 at start.

    After ``init_weights`` the Runner broadcasts every parameter and buffer from rank 0, so that all
    ranks start alike. A sharded class-level head's proxies differ between ranks by design (each
    holds its own class shard, drawn from the same RNG as the full matrix): those are the names the
    model registered with DDP as ignored, and they are left alone here too.
    """

    def _init_model_weights(self) -> None:
        model = unwrap_model(self.model)
        if hasattr(model, "init_weights"):
            model.init_weights()
            rank_local = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
            for name, tensor in model.state_dict().items():
                if name not in rank_local:
                    broadcast(tensor)


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
