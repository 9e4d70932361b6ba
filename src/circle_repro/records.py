"""The two records a run folder holds: ``train.json`` (what training did) and ``metrics.json`` (what
evaluation measured), each one dataclass shared by the step that writes it and the steps that read it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from circle_repro.io import write_json

_RecordT = TypeVar("_RecordT", bound="_Record")


class RecordError(ValueError):
    """A run record is not a JSON object of the expected fields; the message names the file and the field."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(annotation: str, value: Any) -> bool:
    """Whether a JSON value fits a record field's annotation (``dict[...]``, ``str``, ``int``, ``float``, ``tuple``)."""
    if value is None:
        return annotation.endswith("| None")
    kind = annotation.split("[")[0].split(" |")[0]
    checks = {
        "dict": lambda v: isinstance(v, Mapping),
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": _is_number,
        "tuple": lambda v: isinstance(v, list | tuple) and all(isinstance(item, str) for item in v),
    }
    return checks[kind](value)


@dataclass(frozen=True, kw_only=True)
class _Record:
    """JSON round trip of a record: fields in declaration order, tuples as lists."""

    _required: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object written to its file."""
        data = asdict(self)
        data.pop("_required")
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_json(cls: type[_RecordT], data: Any, where: str) -> _RecordT:
        """The record of a parsed JSON object; RecordError naming ``where`` and the field when it does not fit.
        Keys the record does not know are ignored."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{where} is not a JSON object")
        known = {f.name: f for f in fields(cls) if f.init}
        missing = [name for name in cls._required if name not in data]
        if missing:
            raise RecordError(f"{where} lacks {', '.join(missing)}")
        values = {name: data[name] for name in known if name in data}
        for name, value in values.items():
            annotation = str(known[name].type)
            if not _fits(annotation, value):
                raise RecordError(f"{where} is malformed: {name!r} must be {annotation}, got {value!r}")
        return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})

    @classmethod
    def read(cls: type[_RecordT], path: str | Path) -> _RecordT:
        """The record stored at ``path``; RecordError naming the file when it is not JSON or does not fit."""
        try:
            data = json.loads(Path(path).read_text())
        except ValueError as exc:
            raise RecordError(f"{path} is half-written or not JSON ({exc})") from exc
        return cls.from_json(data, str(path))

    def write(self, path: str | Path) -> None:
        """Write the record to ``path`` atomically."""
        write_json(path, self.to_json())


@dataclass(frozen=True, kw_only=True)
class TrainRecord(_Record):
    """``train.json``: the run, its MLflow run, its resolved config and model, and how training went."""

    _required: tuple[str, ...] = field(
        default=("run_id", "mlflow_run_id", "tracking_uri", "config", "config_hash", "model"),
        init=False,
        repr=False,
        compare=False,
    )
    run_id: str
    mlflow_run_id: str
    tracking_uri: str
    weights_uri: str = ""
    config: dict[str, Any]
    config_hash: str
    model: dict[str, Any]
    iterations: int = 0
    iterations_per_epoch: int = 0
    launcher: str = "none"
    world_size: int = 1
    global_batch_size: int = 0
    wall_time_s: float = 0.0
    throughput_images_per_s: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MetricsRecord(_Record):
    """``metrics.json``: one run's evaluation on its test set, of the trained and of the initial weights.

    ``arrays`` holds the sha256 of each array file written with it (per_query.npz, similarities.npz).
    """

    _required: tuple[str, ...] = field(default=("run_id", "config_hash"), init=False, repr=False, compare=False)
    run_id: str
    experiment: str = ""
    loss: str = ""
    seed: int = 0
    table: str = ""
    trained_by: str = ""
    dataset: str = ""
    protocol: str = ""
    split: str = "test"
    n_images: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    untrained_metrics: dict[str, float] = field(default_factory=dict)
    trivial: tuple[str, ...] = ()
    mlflow_run_id: str = ""
    weights_uri: str = ""
    config_hash: str
    provenance: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> MetricsRecord:
        """As :meth:`_Record.from_json`; the record must hold metrics, every one a finite number."""
        if isinstance(data, Mapping):
            metrics = data.get("metrics")
            if not isinstance(metrics, Mapping) or not metrics:
                raise RecordError(f"{where} has no metrics; re-run `circle-repro evaluate`")
            untrained, provenance = data.get("untrained_metrics") or {}, data.get("provenance", {})
            if not isinstance(untrained, Mapping) or not isinstance(provenance, Mapping):
                raise RecordError(f"{where} is malformed: 'untrained_metrics' and 'provenance' must be mappings")
            if not all(_is_number(value) for value in {**metrics, **untrained}.values()):
                raise RecordError(f"{where} holds a metric that is not a finite number")
            data = {**data, "untrained_metrics": dict(untrained)}
        return super().from_json(data, where)
