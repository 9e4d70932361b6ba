"""Helpers shared by the tests (import as `from support import ...`)."""

from __future__ import annotations

import copy
import importlib.util
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from circle_repro.config import INHERITED_FROM_TRAINER, expand_trained_by

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"


def benchmark_script(name: str) -> ModuleType:
    """A script of benchmarks/ (not a package), imported from its path, once per test session."""
    module_name = f"_benchmark_{Path(name).stem}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look the module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def tiny_params(params: dict[str, Any], epochs: int = 1, max_images: int | None = 400) -> dict[str, Any]:
    """The committed params cut down to one seed, ``epochs`` epochs (2 iterations for an
    iteration-based recipe) and a training subset; ``trained_by`` experiments completed from their
    cut-down trainers."""
    tiny = copy.deepcopy(params)
    for experiment in tiny["experiments"].values():
        if "trained_by" in experiment:
            continue
        experiment["seeds"] = experiment["seeds"][:1]
        train = experiment["train"]
        if "iterations" in train:
            train["iterations"] = 2
            train.pop("checkpoint_interval", None)
        else:
            train["epochs"] = epochs
        train["max_images"] = max_images
    return expand_trained_by(tiny)


def write_params(params: dict[str, Any], path: Path) -> Path:
    """Write ``params`` as a params.yaml holds them: a ``trained_by`` experiment without what it takes
    from its trainer (see :func:`circle_repro.config.expand_trained_by`)."""
    inherited = {*INHERITED_FROM_TRAINER, "train_dataset"}
    experiments = {
        name: {key: value for key, value in spec.items() if key not in inherited} if "trained_by" in spec else spec
        for name, spec in params["experiments"].items()
    }
    path.write_text(yaml.safe_dump({**params, "experiments": experiments}, sort_keys=False))
    return path


def spawn_ranks(worker: Callable[[int, str, str], None], folder: Path, world_size: int) -> list[dict]:
    """Run ``worker(rank, init_file, out_dir)`` in ``world_size`` processes; return what each saved as
    ``out_dir/rank<r>.pt`` (a dict), in rank order."""
    import torch
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(str(folder / "init"), str(folder)), nprocs=world_size, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


# --- Injected failures and kills (the one-generation tests of evaluate, report and data prepare) ------------


class InjectedFailure(RuntimeError):
    """The failure :func:`fail_on_call` raises."""


def fail_on_call(original: Callable[..., Any], number: int) -> Callable[..., Any]:
    """``original``, except that its call number ``number`` raises :class:`InjectedFailure`."""
    calls = {"n": 0}

    def maybe_fail(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == number:
            raise InjectedFailure(f"injected failure at call {number}")
        return original(*args, **kwargs)

    return maybe_fail


def kill_on_call(owner: object, name: str, number: int, when: str) -> None:
    """Make ``owner.name`` SIGKILL this process just ``before`` or ``after`` its call number ``number``
    (for a subprocess whose outputs a test then inspects)."""
    original, calls = getattr(owner, name), []

    def killing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == number and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if len(calls) == number and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, killing)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) -> its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }
