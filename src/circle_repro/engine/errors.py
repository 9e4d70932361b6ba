"""Why a training attempt stopped, as the CLI reports it: one paragraph naming the file or URI and the fix."""

from __future__ import annotations


class CheckpointError(Exception):
    """A run's checkpoints cannot be resumed: none is usable, or one asks to import code."""


class TrackingStoreUnreachable(ConnectionError):
    """The MLflow tracking server does not answer."""


class Terminated(BaseException):
    """SIGTERM arrived during a training attempt (SLURM's preemption or time limit, ``kill``)."""
