"""What the Snakefile and dvc.yaml need from params: targets, folders and rerun triggers.

Snakemake reruns a job when its ``params`` change, so each step gets a JSON string of exactly the
settings it depends on: editing one loss's gamma retrains that loss's runs and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from circle_repro.config import RunSpec, eval_config, expand_runs, train_config
from circle_repro.layout import HISTORY_FILENAME, METRICS_FILENAME, SIMILARITIES_FILENAME

PREPARED_ROOT = Path("data/prepared")
RUNS_ROOT = Path("runs")
REPORT_DIR = Path("reports")


def _as_trigger(config: Any) -> str:
    return json.dumps(config, sort_keys=True)


def run_from_wildcards(experiment: str, loss: str, seed: str | int) -> RunSpec:
    """The run named by a rule's wildcards."""
    return RunSpec(experiment, loss, int(seed))


def prepared_dir(params: dict[str, Any], experiment: str) -> Path:
    """The prepared data folder an experiment trains and evaluates on."""
    return PREPARED_ROOT / params["experiments"][experiment]["dataset"]


def dataset_trigger(params: dict[str, Any], dataset: str) -> str:
    """The settings a data set's preparation depends on."""
    return _as_trigger(params["datasets"].get(dataset, {}))


def train_trigger(params: dict[str, Any], run: RunSpec) -> str:
    """The settings one run's training depends on."""
    return _as_trigger(train_config(params, run))


def eval_trigger(params: dict[str, Any], run: RunSpec) -> str:
    """The settings one run's evaluation depends on."""
    return _as_trigger(eval_config(params, run))


def report_trigger(params: dict[str, Any]) -> str:
    """The settings the report depends on beyond the metrics files."""
    layout = {
        name: {key: exp.get(key) for key in ("description", "table", "dataset")} | {"losses": list(exp["losses"])}
        for name, exp in params["experiments"].items()
    }
    return _as_trigger({"report": params["report"], "tracking": params["tracking"], "experiments": layout})


def run_outputs(params: dict[str, Any], filename: str) -> list[str]:
    """``filename`` inside every run folder the params define."""
    return [(run.run_dir(RUNS_ROOT) / filename).as_posix() for run in expand_runs(params)]


def metrics_targets(params: dict[str, Any]) -> list[str]:
    """Every run's metrics.json: what the report reads."""
    return run_outputs(params, METRICS_FILENAME)


def similarity_targets(params: dict[str, Any]) -> list[str]:
    """Every run's sampled test similarities: what the report's figures read."""
    return run_outputs(params, SIMILARITIES_FILENAME)


def history_targets(params: dict[str, Any]) -> list[str]:
    """Every run's training history: what the report's dynamics figure reads."""
    return run_outputs(params, HISTORY_FILENAME)
