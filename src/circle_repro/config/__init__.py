"""Load and validate params.yaml, and expand experiments into runs.

:mod:`.load` reads and checks the file and selects a profile; :mod:`.expand` completes its experiments
(sweeps, ``trained_by``); :mod:`.runs` names their runs and the configs each run's steps depend on;
:mod:`.typed` gives the typed views (experiment, loss row, sweep, run) the rest of the project reads.
"""

from circle_repro.config.expand import (
    INHERITED_FROM_TRAINER,
    SWEPT_PARAMETERS,
    expand_trained_by,
    experiment_datasets,
    train_dataset,
    validation_datasets,
)
from circle_repro.config.load import (
    ConfigError,
    load_params,
    name_pattern,
    params_schema,
    select_profile,
    validate_params,
)
from circle_repro.config.runs import (
    TRAIN_RESOURCE_DEFAULTS,
    RunSpec,
    config_hash,
    eval_config,
    expand_runs,
    find_run,
    resources_of,
    tracking_experiment,
    train_config,
    training_run,
)
from circle_repro.config.typed import Experiment, LossSpec, Run, Study, Sweep, experiments, load_study

__all__ = [
    "INHERITED_FROM_TRAINER",
    "SWEPT_PARAMETERS",
    "TRAIN_RESOURCE_DEFAULTS",
    "ConfigError",
    "Experiment",
    "LossSpec",
    "Run",
    "RunSpec",
    "Study",
    "Sweep",
    "config_hash",
    "eval_config",
    "expand_runs",
    "expand_trained_by",
    "experiment_datasets",
    "experiments",
    "find_run",
    "load_params",
    "load_study",
    "name_pattern",
    "params_schema",
    "resources_of",
    "select_profile",
    "tracking_experiment",
    "train_config",
    "train_dataset",
    "training_run",
    "validate_params",
    "validation_datasets",
]
