"""The measured CPU rates the plan turns into job time: decoding, preparation and metric speed.

They live in a data file (``benchmarks/job_rates.yaml``), each figure with the benchmark result it was
copied from; the GPU training rates come from a ``benchmarks/train_throughput.py --out`` file instead
(:mod:`circle_repro.plan.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from circle_repro.layout import DEFAULT_RATES
from circle_repro.schema import check, packaged_schema

SCHEMA_RESOURCE = "job_rates.schema.yaml"


@dataclass(frozen=True)
class MetricRate:
    """One timed metric run: ``images`` x ``images`` similarities in ``seconds``, at ``peak_rss_mb``."""

    source: str
    images: int
    seconds: float
    peak_rss_mb: float
    threads: int

    @property
    def similarities_per_s(self) -> float:
        return self.images * self.images / self.seconds


@dataclass(frozen=True)
class JobRates:
    """Per-core decode and preparation images/s per transform style, the metric rate and the forward speedup."""

    source: str
    decode_per_core: dict[str, float]
    preparation_per_core: dict[str, float]
    metric: MetricRate
    forward_speedup: float
    preparation_by_dataset: dict[str, float] = field(default_factory=dict)  # a rehearsed job's rate, per data set


def load_rates(path: str | Path = DEFAULT_RATES) -> JobRates:
    """Read and check a job rates file (see the comment at the top of ``benchmarks/job_rates.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: job rates file not found (benchmarks/job_rates.yaml in the repository)"
        ) from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    check(data, packaged_schema(__package__, SCHEMA_RESOURCE), str(path), "job rates file")
    metric = data["metric"]
    return JobRates(
        source=str(path),
        decode_per_core=_per_core(data["decode"]),
        preparation_per_core=_per_core(data["preparation"]),
        metric=MetricRate(metric["source"], metric["images"], float(metric["seconds"]),
                          float(metric["peak_rss_mb"]), metric["threads"]),
        forward_speedup=float(data["forward_speedup_over_training"]),
        preparation_by_dataset=_per_core(data["preparation_by_dataset"]) if "preparation_by_dataset" in data else {},
    )  # fmt: skip


def _per_core(section: dict[str, Any]) -> dict[str, float]:
    return {style: float(entry["images_per_s"]) for style, entry in section["per_core_images_per_s"].items()}


__all__ = ["JobRates", "MetricRate", "load_rates"]
