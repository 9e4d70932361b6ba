"""One attempt at a training run: what it resumes, which MLflow run it continues, and how that MLflow
run ends.

A run folder's ``work/`` holds the checkpoints and ``resume.json`` (the settings' hash, the MLflow run and
the work folder's path). A start with the same settings resumes the newest usable checkpoint in the same
MLflow run, however many times the run was interrupted and wherever its folder was moved. A copy of a run
folder (the recorded folder is still there, another folder, and still records the same MLflow run) resumes
its checkpoint into a new MLflow run, tagged ``copy_of_mlflow_run``: the original and its copy never log
into one MLflow run, and the original's run is left as it is. The MLflow params are the run's settings
only (:data:`TRACKED_CONFIG_KEYS`), which every resumable attempt shares: MLflow refuses to change a
logged param, so paths and the checkpoint being resumed are never params.

An MLflow run never stays RUNNING after its attempt, nor shows FINISHED without its model: an attempt
ends its run FINISHED once ``model.pth`` is written, KILLED on Ctrl-C or SIGTERM (SLURM's preemption and
time limit), FAILED on any other error; a run whose process died without a word (SIGKILL, a lost node) is
marked FAILED by the next start that does not continue it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmengine.dist import barrier, is_main_process
from mmengine.registry import VISBACKENDS
from mmengine.utils import scandir
from mmengine.visualization import MLflowVisBackend

from circle_repro.engine.checkpoint import latest_checkpoint
from circle_repro.engine.errors import Terminated
from circle_repro.engine.tracking import end_abandoned_run, run_is_open
from circle_repro.io import write_json

RESUME_STATE_FILENAME = "resume.json"
"""In the work folder: the settings' hash and the MLflow run that a resume continues."""
TRACKED_CONFIG_KEYS = ("circle_repro",)
"""The keys of the mmengine config logged as MLflow params: the run's settings, nothing that changes
between attempts (``work_dir``, ``load_from``, ``resume``, data paths)."""
MLFLOW_BACKEND = "AttemptMLflowVisBackend"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """What a training attempt starts from."""

    checkpoint: str | None
    """``run-checkpoint://`` address of the checkpoint to resume; None: train from iteration 0."""
    mlflow_run_id: str | None
    """The MLflow run to continue; None: open a new one."""
    copy_of: str | None = None
    """The MLflow run of the folder this work folder is a copy of (its new MLflow run is tagged with it)."""


def _read_state(work_dir: Path) -> dict[str, str]:
    try:
        return json.loads((work_dir / RESUME_STATE_FILENAME).read_text())
    except (OSError, ValueError):
        return {}


def _copied_from(work_dir: Path, previous: dict[str, str]) -> Path | None:
    """The work folder that ``work_dir`` is a copy of: the folder its state records, if that is another
    folder, still there and still recording the same MLflow run (a moved folder leaves none behind)."""
    recorded = previous.get("work_dir")
    if recorded is None or not Path(recorded).is_dir():
        return None
    with contextlib.suppress(OSError):
        if os.path.samefile(recorded, work_dir):  # the same folder under another path (a symlink, a bind mount)
            return None
    if _read_state(Path(recorded)).get("mlflow_run_id") != previous.get("mlflow_run_id"):
        return None
    return Path(recorded)


def begin_attempt(work_dir: str | Path, config_hash: str, tracking_uri: str) -> Attempt:
    """Decide what this start of a run resumes (every rank calls it; rank 0 clears and logs).

    A work folder of other settings is removed; an earlier MLflow run that is not continued and still
    shows RUNNING is marked FAILED, unless this folder is a copy (its original's run is left alone).
    Raises :class:`~circle_repro.engine.errors.CheckpointError` when the work folder has checkpoints but
    none is usable, or one asks to import code.
    """
    work_dir = Path(work_dir)
    main = is_main_process()
    previous = _read_state(work_dir) if main else {}
    earlier_run = previous.get("mlflow_run_id")
    original = _copied_from(work_dir, previous) if earlier_run else None
    if main and work_dir.exists() and previous.get("config_hash") != config_hash:
        found = f"config hash {previous['config_hash']}" if "config_hash" in previous else f"no {RESUME_STATE_FILENAME}"
        _log.warning(
            f"{work_dir}: not resumable with these settings ({found}, {config_hash} now); removed, training from iteration 0"
        )
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints of other settings must not be resumed
        if earlier_run and original is None:
            end_abandoned_run(tracking_uri, earlier_run, "its run folder was restarted with other settings")
        earlier_run = None
    barrier()  # the other ranks look for checkpoints only after rank 0 has cleared stale ones
    checkpoint = latest_checkpoint(work_dir)
    if not main or earlier_run is None:
        return Attempt(checkpoint, None)
    if original is not None:
        _log.warning(
            f"{work_dir}: a copy of {original}, whose MLflow run {earlier_run} it leaves to the original; "
            f"{'resuming' if checkpoint else 'training'} into a new MLflow run"
        )
        return Attempt(checkpoint, None, copy_of=earlier_run)
    if checkpoint is None:
        _log.warning(
            f"{work_dir}: no checkpoint yet (the earlier start stopped before its first); training from iteration 0"
        )
        end_abandoned_run(
            tracking_uri, earlier_run, "it stopped before its first checkpoint; restarted from iteration 0"
        )
        return Attempt(None, None)
    if not run_is_open(tracking_uri, earlier_run):
        _log.warning(f"{work_dir}: MLflow run {earlier_run} is not in {tracking_uri}; resuming into a new MLflow run")
        return Attempt(checkpoint, None)
    return Attempt(checkpoint, earlier_run)


def record_attempt(work_dir: str | Path, config_hash: str, mlflow_run_id: str) -> None:
    """Note the settings' hash, MLflow run and folder of this attempt for the next start (rank 0)."""
    state = {"config_hash": config_hash, "mlflow_run_id": mlflow_run_id, "work_dir": str(Path(work_dir).resolve())}
    write_json(Path(work_dir) / RESUME_STATE_FILENAME, state)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside (on the main thread): SIGTERM raises :class:`Terminated`; a second one is ignored while it unwinds."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"{signal.Signals(signum).name} received")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ending_mlflow_run() -> Iterator[None]:
    """End this process's active MLflow run (the training run, on rank 0) as the body ends: FINISHED
    when it completes, KILLED on Ctrl-C or SIGTERM (raised as :class:`Terminated` inside), FAILED on
    any other exception, which goes on."""
    import mlflow

    try:
        with _sigterm_raises():
            yield
    except BaseException as exc:
        if mlflow.active_run() is not None:
            status = "KILLED" if isinstance(exc, (KeyboardInterrupt, Terminated)) else "FAILED"
            try:
                mlflow.end_run(status=status)
            except Exception as failure:  # the store may be what failed: keep the original error
                _log.warning(f"could not mark MLflow run {status}: {failure}")
        raise
    if mlflow.active_run() is not None:
        mlflow.end_run(status="FINISHED")


@VISBACKENDS.register_module(name=MLFLOW_BACKEND)
class AttemptMLflowVisBackend(MLflowVisBackend):
    """mmengine's MLflowVisBackend, except that closing it uploads the work folder's logs but leaves the
    MLflow run open: :func:`ending_mlflow_run` ends it once the attempt's outputs are written."""

    def close(self) -> None:
        if not hasattr(self, "_mlflow"):
            return
        work_dir = Path(self.cfg.work_dir)
        for name in scandir(str(work_dir), self._artifact_suffix, True):
            folder = Path(name).parent
            self._mlflow.log_artifact(str(work_dir / name), "" if folder == Path(".") else str(folder))
