"""What a profile's experiments expand into: Fig. 3 sweeps into one experiment per point, ``trained_by``
experiments completed from their trainer, and the data sets each experiment needs."""

from __future__ import annotations

import copy
from typing import Any

SWEPT_PARAMETERS = ("gamma", "m")


def sweep_loss_name(loss: str, parameter: str, value: float) -> str:
    """The loss row name of one swept value, e.g. ``CircleLoss-gamma128`` or ``CircleLoss-m-0.2``."""
    return f"{loss}-{parameter}{value:g}"


def expand_sweeps(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each sweep turned into an experiment: the base experiment with one loss row per
    swept value (of the swept loss and of each baseline), the sweep's seeds, and a ``sweep`` entry naming
    each row's loss, parameter and value (``points``), the baselines, the base rows' own gamma and m
    (``base_values``: the runs of the base experiment that complete each curve) and the sweep's entry as
    params.yaml declares it (``declared``)."""
    experiments = dict(params["experiments"])
    for name, sweep in params.get("sweeps", {}).items():
        base = params["experiments"][sweep["base"]]
        swept = {sweep["loss"]: sweep, **sweep.get("baselines", {})}
        losses, points = {}, {}
        for loss, values in swept.items():
            for parameter in SWEPT_PARAMETERS:
                for value in values.get(parameter, ()):
                    row = sweep_loss_name(loss, parameter, value)
                    losses[row] = {**base["losses"][loss], parameter: value}
                    points[row] = {"loss": loss, "parameter": parameter, "value": value}
        base_values = {
            loss: {key: base["losses"][loss][key] for key in SWEPT_PARAMETERS if key in base["losses"][loss]}
            for loss in swept
        }
        experiments[name] = {
            **copy.deepcopy(base),
            "description": sweep["description"],
            "seeds": list(sweep["seeds"]),
            "losses": losses,
            "sweep": {
                "base": sweep["base"],
                "loss": sweep["loss"],
                "metric": sweep["metric"],
                "points": points,
                "baselines": list(sweep.get("baselines", {})),
                "base_values": base_values,
                "declared": copy.deepcopy(sweep),
            },
        }
    return {**params, "experiments": experiments}


#: What an experiment with ``trained_by`` takes from the experiment that trains its weights.
INHERITED_FROM_TRAINER = ("seeds", "model", "sampler", "train", "losses", "resources")


def train_dataset(experiment: dict[str, Any]) -> str:
    """The data set an experiment's runs train on: ``train_dataset``, else its ``dataset``."""
    return experiment.get("train_dataset", experiment["dataset"])


def validation_datasets(experiment: dict[str, Any]) -> list[str]:
    """The data sets an experiment's training validates on (``train.validation.sets``)."""
    return list(experiment["train"].get("validation", {}).get("sets", {}))


def experiment_datasets(experiment: dict[str, Any]) -> list[str]:
    """The data sets an experiment needs: its test set, its training set and its validation sets."""
    return list(dict.fromkeys([experiment["dataset"], train_dataset(experiment), *validation_datasets(experiment)]))


def expand_trained_by(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each ``trained_by`` experiment completed from its trainer: the trainer's seeds,
    model, sampler, train settings, losses and resources, and its training data as ``train_dataset``.

    Such an experiment evaluates the trainer's weights on its own test set (``dataset``, ``evaluation``)
    for its own ``table``: one face training, five face test sets (Tables 1-3).
    """
    experiments = dict(params["experiments"])
    for name, spec in params["experiments"].items():
        if "trained_by" not in spec:
            continue
        trainer = params["experiments"][spec["trained_by"]]
        inherited = {key: copy.deepcopy(trainer[key]) for key in INHERITED_FROM_TRAINER if key in trainer}
        experiments[name] = {**inherited, "train_dataset": train_dataset(trainer), **spec}
    return {**params, "experiments": experiments}
