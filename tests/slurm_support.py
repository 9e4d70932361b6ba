"""Helpers shared by the SLURM profile tests (stub commands and a real cluster)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from support import REPO_ROOT, write_params

VENV_BIN = Path(sys.executable).parent


def copy_project(root: Path, params: dict[str, Any]) -> Path:
    """A copy of the workflow files (Snakefile, rules, profiles) under ``root`` with its own params.yaml."""
    project = root / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "Snakefile", project / "Snakefile")
    shutil.copytree(REPO_ROOT / "workflow", project / "workflow")
    shutil.copytree(REPO_ROOT / "profiles", project / "profiles")
    write_params(params, project / "params.yaml")
    return project


def argv_value(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in an argv, as ``name value`` or ``name=value``."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def attempt_logs(project: Path, run: str) -> list[str]:
    """The per-attempt copies of a training run's log (``experiment/loss/seedN``), oldest first."""
    folder = project / "logs" / "train" / f"{run}.attempts"
    return [path.read_text() for path in sorted(folder.glob("*.log"))]
