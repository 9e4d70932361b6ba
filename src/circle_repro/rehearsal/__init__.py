"""``circle-repro rehearse``: the paper DAG on synthetic data in each data set's real raw format, at a fraction
of its real size, with shortened schedules; every job's throughput and its extrapolation to scale 1 against the
resources the job declares (:mod:`~circle_repro.rehearsal.run`, docs/rehearsal.md)."""

from circle_repro.rehearsal.extrapolate import Extrapolation, full_scale_seconds
from circle_repro.rehearsal.run import RECORD_CSV, RECORD_JSON, Rehearsal, format_rehearsal, rehearse
from circle_repro.rehearsal.scale import Scale
from circle_repro.rehearsal.steps import RehearsalError, Step

__all__ = [
    "RECORD_CSV",
    "RECORD_JSON",
    "Extrapolation",
    "Rehearsal",
    "RehearsalError",
    "Scale",
    "Step",
    "format_rehearsal",
    "full_scale_seconds",
    "rehearse",
]
