"""What a profile costs before it runs (:mod:`~circle_repro.plan.estimate`, per job
:mod:`~circle_repro.plan.jobs`, from :mod:`~circle_repro.plan.inputs` and :mod:`~circle_repro.plan.rates`)
and what it cost after (:mod:`~circle_repro.plan.actual`); :mod:`~circle_repro.plan.text` prints a plan."""

from circle_repro.plan.actual import (
    FIGURES,
    GROUPS,
    ActualHours,
    Benchmark,
    actual_hours,
    experiment_group,
    read_benchmark,
)
from circle_repro.plan.estimate import (
    DatasetPlan,
    ExperimentPlan,
    Plan,
    PlannedVsActual,
    TablePlan,
    make_plan,
    plan_dataset,
    plan_experiment,
    planned_vs_actual,
    write_plan,
)
from circle_repro.plan.inputs import (
    CHECKPOINTS_KEPT,
    EvaluationCounts,
    Throughput,
    download_bytes,
    evaluation_image_counts,
    load_throughput,
    optimizer_slots,
    preparation_image_count,
    run_disk_bytes,
    train_class_count,
    train_image_count,
    training_input,
)
from circle_repro.plan.jobs import SAFETY_FACTOR, JobEstimate
from circle_repro.plan.rates import JobRates, load_rates
from circle_repro.plan.text import format_plan

__all__ = [
    "CHECKPOINTS_KEPT",
    "FIGURES",
    "GROUPS",
    "SAFETY_FACTOR",
    "ActualHours",
    "Benchmark",
    "DatasetPlan",
    "EvaluationCounts",
    "ExperimentPlan",
    "JobEstimate",
    "JobRates",
    "Plan",
    "PlannedVsActual",
    "TablePlan",
    "Throughput",
    "actual_hours",
    "download_bytes",
    "evaluation_image_counts",
    "experiment_group",
    "format_plan",
    "load_rates",
    "load_throughput",
    "make_plan",
    "optimizer_slots",
    "plan_dataset",
    "plan_experiment",
    "planned_vs_actual",
    "preparation_image_count",
    "read_benchmark",
    "run_disk_bytes",
    "train_class_count",
    "train_image_count",
    "training_input",
    "write_plan",
]
