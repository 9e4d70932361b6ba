"""Each job's time and memory from measured rates, and the SLURM resources derived from them.

Training (one run): images / (min(GPU compute rate, decode rate per core x CPUs per GPU) x GPUs), plus
its validations (the validation sets embedded every ``interval`` iterations and after the last). The
compute rate is the backbone's measured training images/s (:class:`~circle_repro.plan.inputs.Throughput`);
the decode rate is the per-core rate of the data set's transform style (:class:`~circle_repro.plan.rates.JobRates`).

Evaluation (one run): images to embed / embedding rate + metric time. Images to embed = test images x 2
(the trained and the initial weights, :func:`circle_repro.engine.evaluate.evaluate_run`) x 2 with ``flip``
(the flipped images are read and embedded again). Embedding rate on one GPU = min(training compute rate x
``forward_speedup``, decode rate per core x CPUs). Metric time = similarities the protocol computes /
the measured metric rate, twice (both weights). Memory = the measured metric run's peak RSS +
``FEATURE_COPIES`` float32 copies of the test set's features.

Preparation (one data set): images / the per-core preparation rate (preparers run in one process).

Derived resources: runtime = estimate x ``SAFETY_FACTOR`` rounded up to ``RUNTIME_STEP_MIN`` minutes and
memory = estimate x ``SAFETY_FACTOR`` rounded up to ``MEMORY_STEP_MB``, never below the step's fixed
floor (``workflow.STEP_RESOURCES``), which also stands where nothing could be estimated. Training jobs
keep the resources their experiment declares in params.yaml (a GPU experiment without ``runtime_min``
gets its estimate x ``SAFETY_FACTOR``); the plan refuses a declared runtime below estimate x
``SAFETY_FACTOR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from circle_repro.config import Study
from circle_repro.data.sources import Source
from circle_repro.plan.inputs import (
    EvaluationCounts,
    Throughput,
    evaluation_image_counts,
    preparation_image_count,
    train_image_count,
)
from circle_repro.plan.rates import JobRates

SAFETY_FACTOR = 1.5
"""Derived runtimes and memory are the estimate times this; a declared runtime must cover estimate x this."""
RUNTIME_STEP_MIN = 5
"""Derived runtimes are rounded up to a multiple of this many minutes."""
MEMORY_STEP_MB = 1000
"""Derived memory is rounded up to a multiple of this many MB."""
FEATURE_COPIES = 5
"""float32 copies of the test set's features an evaluate job holds at its peak: the trained weights' result
kept while the initial weights run, their raw, flipped and summed features, and one more while
``torch.cat`` joins the embedded batches."""
EVALUATED_WEIGHTS = 2
"""Weights an evaluate job embeds the test set with: the trained and the initial (untrained) ones."""


@dataclass(frozen=True)
class JobEstimate:
    """One job's estimate (None: not estimated) and the resources its rule declares for it."""

    rule: str
    name: str
    jobs: int
    images: int | None
    images_per_s: float | None
    bound: str | None
    hours: float | None
    mem_mb: float | None
    declared: dict[str, Any]
    notes: tuple[str, ...]

    @property
    def gpus(self) -> int:
        return int(self.declared.get("gpu", 0))

    @property
    def total_hours(self) -> float | None:
        """Wall hours of all ``jobs`` jobs."""
        return None if self.hours is None else self.hours * self.jobs

    @property
    def gpu_hours(self) -> float | None:
        return None if self.hours is None else self.hours * self.jobs * self.gpus

    @property
    def needed_runtime_min(self) -> float | None:
        """The runtime one job needs: the estimate times the safety factor."""
        return None if self.hours is None else self.hours * 60 * SAFETY_FACTOR

    @property
    def exceeds(self) -> str | None:
        """Why the declared runtime or memory does not cover the estimate x ``SAFETY_FACTOR``; None if it does."""
        problems = []
        needed = self.needed_runtime_min
        if needed is not None and needed > self.declared["runtime"]:
            problems.append(
                f"needs {math.ceil(needed)} min (estimate x {SAFETY_FACTOR}), declares runtime {self.declared['runtime']}"
            )
        if self.mem_mb is not None and self.mem_mb * SAFETY_FACTOR > self.declared["mem_mb"]:
            problems.append(
                f"needs {math.ceil(self.mem_mb * SAFETY_FACTOR)} MB, declares mem_mb {self.declared['mem_mb']}"
            )
        return "; ".join(problems) or None


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step - 1e-9) * step)


def derived_runtime_min(hours: float | None, floor: int) -> int:
    """``hours`` x ``SAFETY_FACTOR`` in minutes, rounded up to ``RUNTIME_STEP_MIN``; ``floor`` at least
    (and where nothing was estimated)."""
    return floor if hours is None else max(floor, _round_up(hours * 60 * SAFETY_FACTOR, RUNTIME_STEP_MIN))


def derived_mem_mb(mem_mb: float | None, floor: int) -> int:
    """``mem_mb`` x ``SAFETY_FACTOR``, rounded up to ``MEMORY_STEP_MB``; ``floor`` at least."""
    return floor if mem_mb is None else max(floor, _round_up(mem_mb * SAFETY_FACTOR, MEMORY_STEP_MB))


def transform_style(dataset: str) -> str:
    """A data set's transform style (``face``, ``reid``, ``retrieval``, ``mnist``): the key of its rates."""
    from circle_repro.data.datasets import get_dataset

    return get_dataset(dataset).transform


def embedding_rate(
    backbone: str, dataset: str, cpus: int, throughput: Throughput | None, rates: JobRates | None
) -> tuple[float | None, str | None, str | None]:
    """Images/s one GPU embeds ``dataset`` at with ``cpus`` decoding, which side bounds it, and why not
    estimated (None when it is)."""
    compute = throughput.images_per_s.get(backbone) if throughput is not None else None
    if compute is None or rates is None:
        return None, None, _missing_rates(backbone, throughput, rates)
    forward = compute * rates.forward_speedup
    decode = rates.decode_per_core[transform_style(dataset)] * cpus
    return (forward, "GPU", None) if forward <= decode else (decode, f"decode on {cpus} CPUs", None)


def _missing_rates(backbone: str, throughput: Throughput | None, rates: JobRates | None) -> str:
    if throughput is None:
        return "no throughput file"
    if backbone not in throughput.images_per_s:
        return f"no throughput measured for {backbone} in {throughput.source}"
    return "no job rates file"


def metric_similarities(protocol: str, counts: EvaluationCounts, evaluation: dict[str, Any]) -> int:
    """Similarities a protocol computes: all pairs (retrieval, re-ranking), queries x gallery (re-ID,
    MegaFace), or about one per image (pair and template verification, whose pairs are few)."""
    n, queries = counts.images, counts.queries
    if protocol == "retrieval" or (protocol == "reid" and evaluation.get("rerank")):
        return n * n
    if protocol in ("reid", "megaface"):
        if queries is None:
            return n * n
        gallery = n - queries
        if protocol == "megaface" and evaluation.get("n_distractors") is not None:
            gallery = min(gallery, int(evaluation["n_distractors"]))
        return queries * gallery
    return n


def estimate_evaluation(
    study: Study,
    experiment: str,
    throughput: Throughput | None,
    rates: JobRates | None,
    sources: dict[str, Source],
    declared: dict[str, Any],
    data_root: Any = None,
) -> JobEstimate:
    """One evaluate job of ``experiment`` (each of its runs has one): time on its declared GPU and CPUs, memory."""
    exp = study.experiments[experiment]
    dataset, evaluation = exp.dataset, exp.evaluation
    jobs = len(exp.losses) * len(exp.seeds)
    counts = evaluation_image_counts(dataset, sources[dataset], data_root)
    common = dict(rule="evaluate", name=experiment, jobs=jobs, declared=declared)
    if counts is None:
        return JobEstimate(**common, images=None, images_per_s=None, bound=None, hours=None, mem_mb=None,
                           notes=(f"test images of {dataset} unknown: not prepared, none documented in sources.yaml",))  # fmt: skip
    notes = (
        []
        if counts.counted_from != "sources.yaml"
        else [f"{counts.images:,} test images of {dataset} from sources.yaml"]
    )
    images = counts.images * EVALUATED_WEIGHTS * (2 if evaluation.get("flip") else 1)
    features_mb = counts.images * exp.model["embedding_dim"] * 4 / 2**20
    mem_mb = rates.metric.peak_rss_mb + FEATURE_COPIES * features_mb if rates is not None else None
    rate, bound, missing = None, None, None
    if declared.get("gpu", 0) > 0:
        rate, bound, missing = embedding_rate(
            exp.model["backbone"], dataset, declared["cpus_per_task"], throughput, rates
        )
    else:
        missing = "embeds on the CPU: no CPU forward rate measured"
    if rate is None or rates is None:
        notes.append(f"time not estimated: {missing}")
        return JobEstimate(
            **common, images=images, images_per_s=None, bound=None, hours=None, mem_mb=mem_mb, notes=tuple(notes)
        )
    metric_s = (
        EVALUATED_WEIGHTS
        * metric_similarities(evaluation["protocol"], counts, evaluation)
        / rates.metric.similarities_per_s
    )
    hours = (images / rate + metric_s) / 3600
    return JobEstimate(
        **common, images=images, images_per_s=rate, bound=bound, hours=hours, mem_mb=mem_mb, notes=tuple(notes)
    )


def training_rate(
    backbone: str, dataset: str, cpus_per_gpu: int, throughput: Throughput | None, rates: JobRates | None
) -> tuple[float | None, str | None, str | None]:
    """Training images/s of one GPU: min(its measured compute rate, decode rate per core x CPUs per GPU);
    which side bounds it; why not estimated (None when it is)."""
    compute = throughput.images_per_s.get(backbone) if throughput is not None else None
    if compute is None:
        return None, None, _missing_rates(backbone, throughput, rates)
    if rates is None:
        return compute, "GPU (data loading not estimated: no job rates file)", None
    decode = rates.decode_per_core[transform_style(dataset)] * cpus_per_gpu
    return (compute, "GPU", None) if compute <= decode else (decode, f"decode on {cpus_per_gpu} CPUs per GPU", None)


def validation_seconds(
    study: Study,
    experiment: str,
    iterations: int,
    cpus: int,
    throughput: Throughput | None,
    rates: JobRates | None,
    sources: dict[str, Source],
) -> tuple[float | None, str | None]:
    """Seconds one run spends on ``train.validation``: each set's test images (x 2 with ``flip``) embedded
    every ``interval`` iterations and after the last; why not estimated (None when it is)."""
    exp = study.experiments[experiment]
    validation = exp.spec["train"].get("validation")
    if not validation:
        return 0.0, None
    rounds = math.ceil(iterations / validation["interval"])
    seconds = 0.0
    for name, settings in validation["sets"].items():
        counts = evaluation_image_counts(name, sources[name], None)
        rate, _, missing = embedding_rate(exp.model["backbone"], name, cpus, throughput, rates)
        if counts is None or rate is None:
            return None, missing or f"test images of validation set {name} unknown"
        seconds += rounds * counts.images * (2 if settings.get("flip") else 1) / rate
    return seconds, None


def estimate_training(
    study: Study,
    experiment: str,
    images_per_run: int | None,
    throughput: Throughput | None,
    rates: JobRates | None,
    sources: dict[str, Source],
    declared: dict[str, Any],
) -> JobEstimate:
    """One training job (run) of ``experiment``: its images over all GPUs at the data-bound training rate,
    plus its validations; checked against the resources params.yaml declares (``declared``)."""
    exp = study.experiments[experiment]
    jobs = len(exp.losses) * len(exp.seeds)
    gpus = declared.get("gpu", 0)
    common = dict(rule="train", name=experiment, jobs=jobs, images=images_per_run, declared=declared, mem_mb=None)
    if gpus == 0:
        return JobEstimate(**common, images_per_s=None, bound=None, hours=None,
                           notes=("trains on the CPU (resources.gpus 0): no GPU-hours",))  # fmt: skip
    cpus_per_gpu = declared["cpus_per_task"] // gpus
    rate, bound, missing = training_rate(exp.model["backbone"], exp.train_dataset, cpus_per_gpu, throughput, rates)
    if images_per_run is None or rate is None:
        why = missing or "train images unknown"
        return JobEstimate(**common, images_per_s=rate, bound=bound, hours=None, notes=(f"time not estimated: {why}",))
    iterations = images_per_run // (exp.batch_images * gpus)
    validating, missing = validation_seconds(study, experiment, iterations, cpus_per_gpu, throughput, rates, sources)
    notes = [] if missing is None else [f"validation time not estimated: {missing}"]
    if validating:
        notes.append(f"validation {validating / 60:.0f} min per run")
    hours = (images_per_run / (rate * gpus) + (validating or 0.0)) / 3600
    return JobEstimate(**common, images_per_s=rate * gpus, bound=bound, hours=hours, notes=tuple(notes))


@dataclass(frozen=True)
class Schedule:
    """One run's training schedule: its train-set size (and where it was read), iterations and images."""

    train_images: int | None
    train_images_from: str
    iterations: int | None
    images: int | None


def run_schedule(study: Study, experiment: str, sources: dict[str, Source], data_root: Any = None) -> Schedule:
    """Iterations and images of one run: ``train.iterations``, or ``epochs`` x (train images // P x K // GPUs)
    batches, each of P x K images on each of ``resources.gpus`` ranks (one rank on the CPU)."""
    exp = study.experiments[experiment]
    dataset, train = exp.train_dataset, exp.spec["train"]
    ranks, batch = max(exp.resources["gpus"], 1), exp.batch_images
    images, images_from = train_image_count(study, dataset, sources[dataset], data_root)
    if images is not None and train.get("max_images") is not None:
        images = min(images, train["max_images"])
    if "iterations" in train:
        iterations: int | None = int(train["iterations"])
    else:
        iterations = None if images is None else int(train["epochs"]) * (images // batch // ranks)
    return Schedule(images, images_from, iterations, None if iterations is None else iterations * batch * ranks)


def estimate_preparation(dataset: str, source: Source, rates: JobRates | None, declared: dict[str, Any]) -> JobEstimate:
    """The prepare_data job of ``dataset``: its images at the rate a rehearsal measured for its whole job where
    the rates file has one (``preparation_by_dataset``: archives, alignment and writing included), else at the
    per-core decode rate of its transform style (a lower bound on the time); one process."""
    images = preparation_image_count(source)
    common = dict(rule="prepare_data", name=dataset, jobs=1, images=images, declared=declared, mem_mb=None)
    if images is None or rates is None:
        why = "no image count in sources.yaml" if images is None else "no job rates file"
        return JobEstimate(**common, images_per_s=None, bound=None, hours=None, notes=(f"time not estimated: {why}",))
    rehearsed = rates.preparation_by_dataset.get(dataset)
    per_core = rehearsed if rehearsed is not None else rates.preparation_per_core[transform_style(dataset)]
    rate = per_core * declared["cpus_per_task"]
    bound = "rehearsal" if rehearsed is not None else "decode"
    return JobEstimate(**common, images_per_s=rate, bound=bound, hours=images / rate / 3600, notes=())


__all__ = [
    "EVALUATED_WEIGHTS",
    "FEATURE_COPIES",
    "MEMORY_STEP_MB",
    "RUNTIME_STEP_MIN",
    "SAFETY_FACTOR",
    "JobEstimate",
    "Schedule",
    "derived_mem_mb",
    "derived_runtime_min",
    "embedding_rate",
    "estimate_evaluation",
    "estimate_preparation",
    "estimate_training",
    "metric_similarities",
    "run_schedule",
    "training_rate",
    "transform_style",
    "validation_seconds",
]
