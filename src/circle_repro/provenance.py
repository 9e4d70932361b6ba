"""Where a result came from: the code's commit and the library versions, for runs and reports."""

from __future__ import annotations

import subprocess
from importlib import metadata


def git_commit(short: bool = True) -> str:
    """The checkout's HEAD commit, with ``-dirty`` when tracked files have uncommitted changes; 'unknown' outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", *(["--short"] if short else []), "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty.stdout.strip() else "")


def library_versions(
    names: tuple[str, ...] = ("circle-repro", "torch", "mmengine", "mlflow", "numpy"),
) -> dict[str, str]:
    """Installed versions of the libraries a result depends on."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
