"""Print pip's configured package sources as `uv pip compile` options, so `make lock` resolves from where pip installs.

Reads `pip config list` (find-links, index-url, extra-index-url and constraint, from pip's configuration files
and PIP_* variables); a setting with several values (space-separated) becomes one option per value.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

OPTIONS = ("index-url", "extra-index-url", "find-links", "constraint")


def uv_options(pip_config_list: str) -> list[str]:
    """The `uv pip compile` options for the source settings in the output of `pip config list`."""
    pairs: list[tuple[str, str]] = []
    for line in pip_config_list.splitlines():
        key, _, value = line.partition("=")
        option = key.rpartition(".")[2]
        if option in OPTIONS and value:
            pairs += [("--" + option, item) for item in shlex.split(value)[0].split()]
    return [part for pair in dict.fromkeys(pairs) for part in pair]  # each (option, value) once, in order


if __name__ == "__main__":
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    print(shlex.join(uv_options(listed.stdout)))
