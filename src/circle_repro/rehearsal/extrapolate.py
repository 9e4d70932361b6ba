"""Full-scale time of each rehearsed job, from its measured rate, against the resources its rule declares.

Preparation and evaluation scale with their images: time at scale 1 = measured seconds x (images at scale 1 /
images rehearsed), i.e. the measured per-image rate applied to the real count. A training run's images are
its schedule's (iterations x batch x GPUs, :func:`circle_repro.plan.jobs.run_schedule`), not the data set's:
time at scale 1 = its fixed cost (wall seconds minus the loop's) + schedule images / the loop's images/s.
The verdict is the plan's (:attr:`circle_repro.plan.jobs.JobEstimate.exceeds`): a declared runtime must cover
the extrapolation x ``SAFETY_FACTOR``. Every rate is this machine's, with the CPUs and devices it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circle_repro.config import Study
from circle_repro.data.sources import Source
from circle_repro.plan.inputs import Throughput, evaluation_image_counts, preparation_image_count
from circle_repro.plan.jobs import EVALUATED_WEIGHTS, JobEstimate, run_schedule
from circle_repro.plan.rates import JobRates
from circle_repro.rehearsal.steps import Step
from circle_repro.workflow import evaluate_resources, prepare_resources, train_resources


def full_scale_seconds(step: Step, full_images: int) -> float:
    """Seconds ``step`` would take on ``full_images`` images at its measured rate (module docstring)."""
    if step.loop_images_per_s:
        fixed = max(0.0, step.seconds - step.images / step.loop_images_per_s)
        return fixed + full_images / step.loop_images_per_s
    return step.seconds * full_images / step.images


def embeddings_per_image(study: Study, experiment: str) -> int:
    """Images an evaluate job of ``experiment`` embeds per test image: both weights (trained and initial), twice
    with ``flip``."""
    return EVALUATED_WEIGHTS * (2 if study.experiment(experiment).evaluation.get("flip") else 1)


def full_scale_images(step: Step, paper: Study, sources: dict[str, Source]) -> int | None:
    """Images ``step``'s job processes at scale 1 (sources.yaml's counts, the schedule of ``paper``, the paper
    profile); None if unknown."""
    if step.rule == "prepare_data":
        return preparation_image_count(sources[step.name])
    if step.rule == "train":
        return run_schedule(paper, step.experiment, sources).images
    dataset = paper.experiment(step.experiment).dataset
    counts = evaluation_image_counts(dataset, sources[dataset], None)
    return None if counts is None else counts.images * embeddings_per_image(paper, step.experiment)


def declared_resources(
    step: Step, paper: Study, throughput: Throughput | None, rates: JobRates | None
) -> dict[str, Any]:
    """The resources the workflow's rule declares for ``step``'s job in ``paper`` (the paper profile)."""
    if step.rule == "prepare_data":
        return prepare_resources(step.name, rates)
    if step.rule == "train":
        return train_resources(paper, step.experiment, throughput, rates)
    return evaluate_resources(paper, step.experiment, throughput, rates)


@dataclass(frozen=True)
class Extrapolation:
    """A measured step, the images of its job at scale 1, the hours they take at the measured rate, and what
    the job declares."""

    step: Step
    full_images: int | None
    hours: float | None
    declared: dict[str, Any]

    @property
    def exceeds(self) -> str | None:
        """Why the declared resources do not cover the extrapolation (the plan's rule); None if they do."""
        estimate = JobEstimate(
            rule=self.step.rule, name=self.step.name, jobs=1, images=self.full_images, images_per_s=None,
            bound=None, hours=self.hours, mem_mb=None, declared=self.declared, notes=(),
        )  # fmt: skip
        return estimate.exceeds

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.step.as_dict(),
            "full_images": self.full_images,
            "full_hours": self.hours,
            "declared": self.declared,
            "exceeds": self.exceeds,
        }


def extrapolate(
    step: Step,
    paper: Study,
    sources: dict[str, Source],
    throughput: Throughput | None,
    rates: JobRates | None,
) -> Extrapolation:
    """``step`` at scale 1 against its declared resources, both in ``paper`` (the paper profile)."""
    full = full_scale_images(step, paper, sources)
    hours = None if full is None else full_scale_seconds(step, full) / 3600
    return Extrapolation(step, full, hours, declared_resources(step, paper, throughput, rates))


__all__ = [
    "Extrapolation",
    "declared_resources",
    "embeddings_per_image",
    "extrapolate",
    "full_scale_images",
    "full_scale_seconds",
]
