"""The measured CPU rates the plan turns into job time: decoding, preparation and metric speed.

They live in a data file (``benchmarks/job_rates.yaml``), each figure with the benchmark result it was
copied from; the GPU training rates come from a ``benchmarks/train_throughput.py --out`` file instead
(:mod:`circle_repro.plan.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from circle_repro.layout import DEFAULT_RATES


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


def _rates(path: Path, data: dict[str, Any], section: str) -> dict[str, float]:
    entries = data[section]["per_core_images_per_s"]
    rates = {style: float(entry["images_per_s"]) for style, entry in entries.items()}
    bad = [style for style, rate in rates.items() if not rate > 0]
    if bad:
        raise ValueError(f"{path}: {section}.per_core_images_per_s: {', '.join(bad)} must be positive")
    return rates


def load_rates(path: str | Path = DEFAULT_RATES) -> JobRates:
    """Read and check a job rates file (see the comment at the top of ``benchmarks/job_rates.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        metric = data["metric"]
        rates = JobRates(
            source=str(path),
            decode_per_core=_rates(path, data, "decode"),
            preparation_per_core=_rates(path, data, "preparation"),
            metric=MetricRate(metric["source"], int(metric["images"]), float(metric["seconds"]),
                              float(metric["peak_rss_mb"]), int(metric["threads"])),
            forward_speedup=float(data["forward_speedup_over_training"]),
        )  # fmt: skip
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: job rates file not found (benchmarks/job_rates.yaml in the repository)"
        ) from None
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise ValueError(
            f"{path}: not a job rates file ({exc!r}); see benchmarks/job_rates.yaml for the fields"
        ) from None
    if not (rates.metric.images > 0 and rates.metric.seconds > 0 and rates.forward_speedup > 0):
        raise ValueError(f"{path}: metric.images, metric.seconds and forward_speedup_over_training must be positive")
    return rates


__all__ = ["JobRates", "MetricRate", "load_rates"]
