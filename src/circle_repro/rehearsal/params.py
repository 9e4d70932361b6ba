"""The rehearsal's params file: the paper profile with shortened schedules, one seed and no pretrained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from circle_repro.config import ConfigError, Study, load_study, validate_params
from circle_repro.io import atomic_open

PROFILE = "paper"


def _shortened(spec: dict[str, Any], iterations: int, max_p: int | None) -> dict[str, Any]:
    spec = dict(spec)
    if "train" in spec:
        train = {key: value for key, value in spec["train"].items() if key != "epochs"}
        train["iterations"] = iterations
        if "warmup" in train and iterations > 1:  # a warm-up ends before the last iteration
            train["warmup"] = {**train["warmup"], "iterations": min(train["warmup"]["iterations"], iterations - 1)}
        elif "warmup" in train:
            del train["warmup"]
        spec["train"] = train
    if "model" in spec:
        spec["model"] = {key: value for key, value in spec["model"].items() if key != "pretrained"}
    if "seeds" in spec:
        spec["seeds"] = spec["seeds"][:1]
    if "sampler" in spec and max_p is not None:
        spec["sampler"] = {**spec["sampler"], "p": min(spec["sampler"]["p"], max_p)}
    return spec


def write_rehearsal_params(
    params_file: str | Path, out_file: str | Path, *, iterations: int, max_p: int | None = None
) -> Study:
    """Write the paper profile of ``params_file`` to ``out_file`` with every training cut to ``iterations``
    iterations (a warm-up within them, none for one), the first seed only, no ``pretrained`` folder (randomly initialised
    backbones) and, with ``max_p``, at most that many classes per batch; return it as loaded (validated) as a
    :class:`~circle_repro.config.Study`."""
    try:
        raw = yaml.safe_load(Path(params_file).read_text(encoding="utf-8"))
        names = raw["profiles"][PROFILE]["experiments"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{params_file}: no {PROFILE!r} profile to rehearse ({exc})") from None
    validate_params(raw, str(params_file))  # the file rehearsed is a valid params file before it is shortened
    raw["profile"] = PROFILE
    raw["profiles"] = {PROFILE: raw["profiles"][PROFILE]}
    raw["tracking"] = {**raw["tracking"], "uri": "sqlite:///mlflow.db"}
    for group in ("experiments", "sweeps"):
        for name in [name for name in raw.get(group, {}) if name in names]:
            raw[group][name] = _shortened(raw[group][name], iterations, max_p)
    raw["experiments"] = {
        name: spec
        for name, spec in raw["experiments"].items()
        if name in names or any(raw.get("sweeps", {}).get(sweep, {}).get("base") == name for sweep in names)
    }
    raw["sweeps"] = {name: spec for name, spec in raw.get("sweeps", {}).items() if name in names}
    with atomic_open(out_file) as fh:
        yaml.safe_dump(raw, fh, sort_keys=False)
    return load_study(out_file, PROFILE)


__all__ = ["PROFILE", "write_rehearsal_params"]
