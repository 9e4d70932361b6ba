"""Where a result came from: the code's commit, the environment's lock and the library versions, for runs and reports."""

from __future__ import annotations

import hashlib
import re
import site
import subprocess
from importlib import metadata
from pathlib import Path

LOCK_PATH = Path(__file__).resolve().parents[2] / "requirements.lock"  # the checkout's lock (an editable install)
PROJECT_DISTRIBUTION = "circle-repro"  # installed from the checkout itself, so not in the lock


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


def _normalise(name: str) -> str:
    """A distribution name as the Python packaging standards compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = LOCK_PATH) -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` line of a lock file (hash and comment lines skipped)."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    """``{name: version}`` of every distribution installed in this environment's site-packages, the project
    itself excepted (not what other entries of ``sys.path`` hold, such as setuptools' vendored packages)."""
    site_packages = [*site.getsitepackages(), site.getusersitepackages()]
    versions = {_normalise(dist.metadata["Name"]): dist.version for dist in metadata.distributions(path=site_packages)}
    versions.pop(PROJECT_DISTRIBUTION, None)
    return versions


def lock_differences(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Each way the installed distributions differ from the locked ones, one line each (empty: they match)."""
    differences = []
    for name in sorted(set(locked) | set(installed)):
        if name not in installed:
            differences.append(f"{name}: locked {locked[name]}, not installed")
        elif name not in locked:
            differences.append(f"{name}: {installed[name]} installed, not in the lock")
        elif installed[name] != locked[name]:
            differences.append(f"{name}: {installed[name]} installed, {locked[name]} locked")
    return differences


def environment_lock(lock: Path = LOCK_PATH) -> dict[str, str]:
    """The lock's sha256 and whether this environment holds exactly its versions, as provenance entries."""
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except FileNotFoundError:
        return {"environment_lock": f"unknown: {lock.name} not found", "environment_matches_lock": "unknown"}
    differences = lock_differences(locked_versions(lock), installed_versions())
    if not differences:
        matches = "yes"
    else:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        matches = f"no, {len(differences)} difference(s): {shown}"
    return {"environment_lock": f"sha256:{digest}", "environment_matches_lock": matches}
