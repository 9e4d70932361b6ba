"""A :class:`~circle_repro.plan.estimate.Plan` as the text ``circle-repro plan`` prints: per table its
hours per step, data and checkpoint disk, then per experiment and data set its jobs against their
declared resources, and last the jobs that exceed them."""

from __future__ import annotations

from circle_repro.data.status import format_size
from circle_repro.layout import STEPS
from circle_repro.plan.estimate import ExperimentPlan, Plan
from circle_repro.plan.jobs import SAFETY_FACTOR, JobEstimate


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _aligned(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def _schedule(e: ExperimentPlan) -> str:
    if e.trained_by is not None:
        return f"trained by {e.trained_by}"
    if e.iterations_per_run is None:
        return "unknown"
    return f"{e.iterations_per_run:,} it x {e.batch_per_gpu}" + (f" x {e.gpus} GPU" if e.gpus else " on the CPU")


def _hours_with_gaps(hours: float, missing: tuple[str, ...]) -> str:
    return f"{hours:.2f} h" + (f" + {len(missing)} not estimated" if missing else "")


def _job_rows(jobs: list[JobEstimate]) -> list[str]:
    rows = [
        (
            "job",
            "count",
            "min/job",
            "runtime min",
            "mem MB",
            "CPUs",
            "GPUs",
            "img/s",
            "bound",
            "fits (estimate x safety)",
        )
    ]
    for job in jobs:
        d, exceeds = job.declared, job.exceeds
        fits = "not estimated" if job.hours is None else ("EXCEEDS: " + exceeds if exceeds else "yes")
        rows.append((
            f"{job.rule} {job.name}", str(job.jobs), "-" if job.hours is None else f"{job.hours * 60:.1f}", str(d["runtime"]), str(d["mem_mb"]),
            str(d["cpus_per_task"]), str(job.gpus), f"{job.images_per_s:,.0f}" if job.images_per_s else "-",
            job.bound or "-", fits,
        ))  # fmt: skip
    return _aligned(rows)


def format_plan(plan: Plan) -> str:
    """The plan as plain text: a header, then per table its runs, hours per step, disk, jobs and missing data."""
    runs = f"{plan.runs} runs"
    if plan.trained_runs != plan.runs:
        runs += f" ({plan.trained_runs} train; {plan.runs - plan.trained_runs} evaluate another experiment's weights)"
    lines = [
        f"Plan for profile {plan.profile}: {runs}, {plan.gpu_hours:.2f} GPU-hours of training (with data loading "
        f"and validation) estimated; every job must fit its estimate x {SAFETY_FACTOR} (safety factor)"
    ]
    if plan.throughput is not None:
        t = plan.throughput
        lines.append(
            f"GPU throughput: {t.device}, amp {t.amp}, batch {t.batch} ({t.source}): forward, loss, backward, step."
        )
    else:
        lines.append("GPU throughput: none given: no training or evaluation time estimated.")
    if plan.rates is not None:
        rehearsed = ", ".join(sorted(plan.rates.preparation_by_dataset)) or "none"
        lines.append(
            f"CPU rates: {plan.rates.source}: decode and preparation images/s per core, metric speed; preparation "
            "counts decoding only (not download, extraction, alignment or writing) except for the data sets whose "
            f"whole preparation a rehearsal measured ({rehearsed})."
        )
    else:
        lines.append("CPU rates: none given: data loading, preparation and evaluation not estimated.")
    for table in plan.tables:
        lines.append("")
        if not table.experiments:
            lines.append(f"{table.table}: no experiment in profile {plan.profile}")
            continue
        gpu = f"{table.gpu_hours:.2f} GPU-hours"
        if table.not_estimated:
            gpu += f" + {len(table.not_estimated)} experiment(s) not estimated"
        data = format_size(table.data_bytes) if table.data_bytes or not table.data_size_unknown else ""
        if table.data_size_unknown:
            data += (" + " if data else "") + f"size not declared for {', '.join(table.data_size_unknown)}"
        ckpt = format_size(table.checkpoint_bytes) if table.checkpoint_bytes is not None else "unknown"
        lines.append(f"{table.table}: {table.runs} runs, {gpu}; disk: data download {data}, checkpoints {ckpt}")
        labels = ("preparation", "training", "evaluation")
        steps = [f"{label} {_hours_with_gaps(*table.hours(rule))}" for rule, label in zip(STEPS, labels, strict=True)]
        evaluate_gpu, _ = table.step_gpu_hours("evaluate")
        lines.append(f"  hours (all jobs, wall): {', '.join(steps)} ({evaluate_gpu:.2f} GPU-hours of evaluation)")
        rows = [
            (
                "experiment",
                "backbone",
                "runs",
                "GPUs",
                "schedule per run",
                "img/s/GPU",
                "GPU-h/run",
                "GPU-h",
                "checkpoints",
            )
        ]
        rows += [
            (
                e.name,
                e.backbone,
                str(e.runs),
                str(e.gpus) if e.trained_by is None else "-",
                _schedule(e),
                f"{e.images_per_s:,.0f}" if e.images_per_s is not None else "-",
                _hours(e.gpu_hours_per_run),
                _hours(e.gpu_hours),
                format_size(e.checkpoint_bytes) if e.checkpoint_bytes is not None else "-",
            )
            for e in table.experiments
        ]
        lines += _aligned(rows)
        lines.append("  jobs (resources declared per job):")
        lines += _job_rows(table.jobs)
        for d in table.datasets:
            size = format_size(d.download_bytes) if d.download_bytes is not None else "size not declared"
            size = "nothing to download" if d.access == "embedded" else size
            state = f"{d.state}, {format_size(d.on_disk_bytes)} on disk" if d.on_disk_bytes else d.state
            lines.append(f"  data {d.name} ({d.access}, {size}): " + (f"MISSING: {d.missing}" if d.missing else state))
        lines += [f"  note {e.name}: {note}" for e in table.experiments for note in e.notes]
        lines += [f"  note {e.name} evaluation: {note}" for e in table.experiments for note in e.evaluate.notes]
        lines += [f"  note {d.name} preparation: {note}" for d in table.datasets for note in d.prepare.notes]
    if plan.exceeding:
        lines += ["", f"{len(plan.exceeding)} job(s) exceed their declared resources:"]
        lines += [f"  {job}: {why}" for job, why in plan.exceeding.items()]
    return "\n".join(lines)


__all__ = ["format_plan"]
