"""requirements.lock is the one environment: every installed package at its locked version, with hashes,
installed by `make` with --require-hashes, and named (by its sha256) in each run's provenance."""

from __future__ import annotations

import hashlib
import re
import subprocess
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from circle_repro.provenance import (
    LOCK_PATH,
    environment_lock,
    installed_versions,
    lock_differences,
    locked_versions,
)
from support import REPO_ROOT


def _lock_entries() -> dict[str, str]:
    """Each requirement of the lock with its continuation lines (``name==v \\`` then ``--hash=...``)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK_PATH.read_text())
    return {block.split("==", 1)[0]: block for block in blocks if "==" in block and not block.startswith("#")}


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            requirement = Requirement(line)
            pins[re.sub(r"[-_.]+", "-", requirement.name).lower()] = next(iter(requirement.specifier)).version
    return pins


def test_this_environment_holds_exactly_the_locked_versions():
    locked = locked_versions()
    assert {"torch", "pip", "setuptools", "pytest"} <= set(locked)
    assert lock_differences(locked, installed_versions()) == []


def test_distributions_on_other_import_paths_are_not_counted_as_installed(tmp_path, monkeypatch):
    """setuptools puts its vendored packages (with their dist-info) on sys.path when imported: they are not
    installed packages of the environment."""
    before = installed_versions()
    vendored = tmp_path / "vendored-0.1.dist-info"
    vendored.mkdir()
    (vendored / "METADATA").write_text("Metadata-Version: 2.1\nName: vendored\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "vendored" in {dist.metadata["Name"] for dist in metadata.distributions()}
    assert installed_versions() == before


def test_every_locked_package_is_pinned_exactly_with_sha256_hashes():
    entries = _lock_entries()
    assert len(entries) == len(locked_versions()) > 200
    for name, block in entries.items():
        assert re.match(r"[A-Za-z0-9._-]+==[^\s\\]+ \\\n", block), name
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"{name} has no hash"
    assert not re.search(r"^\s*-e |file://|/opt/|/etc/", LOCK_PATH.read_text(), flags=re.M)


@pytest.mark.parametrize("source", ["requirements.in", "requirements-dev.in"])
def test_the_lock_holds_every_pin_of_the_in_files(source):
    locked = locked_versions()
    pins = _pins(source)
    assert pins, source
    assert {name: locked.get(name) for name in pins} == pins


def test_make_installs_only_from_the_lock_with_require_hashes():
    dry_run = subprocess.run(
        ["make", "--dry-run", "--always-make", "--no-print-directory", ".venv/.installed"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installs = [line for line in dry_run.splitlines() if " -m pip install " in line]
    assert installs == [
        ".venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock",
        ".venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .",
    ]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): \$\(LOCK\) pyproject.toml$", makefile, flags=re.M)
    assert re.search(r"^LOCK := requirements.lock$", makefile, flags=re.M)


def test_make_lock_regenerates_the_lock_from_the_in_files_with_hashes():
    dry_run = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "lock"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    compile_command = " ".join(dry_run.split("\\\n"))
    assert "uv pip compile" in compile_command and "--generate-hashes" in compile_command
    assert "--output-file requirements.lock requirements-dev.in" in compile_command
    assert "-r requirements.in" in (REPO_ROOT / "requirements-dev.in").read_text().splitlines()


def test_lock_differences_name_each_missing_extra_and_changed_package():
    locked = {"torch": "2.14.1", "numpy": "2.4.6", "pyyaml": "6.0.3"}
    installed = {"torch": "2.13.0", "pyyaml": "6.0.3", "rich": "14.0.0"}
    assert lock_differences(locked, installed) == [
        "numpy: locked 2.4.6, not installed",
        "rich: 14.0.0 installed, not in the lock",
        "torch: 2.13.0 installed, 2.14.1 locked",
    ]
    assert lock_differences(locked, dict(locked)) == []


def test_a_lock_is_read_by_normalised_name_skipping_hashes_and_comments(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# header\nPyYAML==6.0.3 \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "ruamel.yaml==0.18.6 \\\n    --hash=sha256:" + "b" * 64 + "\n    # via dvc\nTyping_Extensions==4.15.0\n"
    )
    assert locked_versions(lock) == {"pyyaml": "6.0.3", "ruamel-yaml": "0.18.6", "typing-extensions": "4.15.0"}


def test_provenance_names_the_lock_by_sha256_and_says_whether_the_environment_matches(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_bytes(LOCK_PATH.read_bytes())
    assert environment_lock(lock) == {
        "environment_lock": "sha256:" + hashlib.sha256(LOCK_PATH.read_bytes()).hexdigest(),
        "environment_matches_lock": "yes",
    }
    lock.write_text(LOCK_PATH.read_text().replace("\npytest==", "\npytest==0.0.0+other\n#"))
    provenance = environment_lock(lock)
    assert provenance["environment_lock"] == "sha256:" + hashlib.sha256(lock.read_bytes()).hexdigest()
    expected = f"no, 1 difference(s): pytest: {metadata.version('pytest')} installed, 0.0.0+other locked"
    assert provenance["environment_matches_lock"] == expected


def test_a_missing_lock_is_said_not_hashed(tmp_path):
    assert environment_lock(tmp_path / "requirements.lock") == {
        "environment_lock": "unknown: requirements.lock not found",
        "environment_matches_lock": "unknown",
    }
