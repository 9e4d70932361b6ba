"""MLflow tracking: where the store lives, whether it answers, its one-time creation, logging results
to a run and closing runs left behind."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from circle_repro.engine.errors import TrackingStoreUnreachable

SQLITE_PREFIX = "sqlite:///"
PROBE_TIMEOUT_S = 5.0
"""How long an http(s) tracking server has to answer before training starts."""
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
"""MLflow's HTTP retries, bounded (its own defaults retry for minutes): a tracking server that goes away
during training fails the call within about a minute. Variables already set in the environment win."""
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
DEFAULT_EXPERIMENT = "circle-repro"
"""The MLflow experiment of a training started without one (the CLI passes the profile's)."""


def tracking_uri(configured: str, base_dir: str | Path) -> str:
    """The tracking store runs go to: ``$MLFLOW_TRACKING_URI`` when set (e.g. a team's tracking server),
    else ``configured`` (``tracking.uri`` of the params file in ``base_dir``), resolved by :func:`resolve_tracking_uri`."""
    return resolve_tracking_uri(os.environ.get(TRACKING_URI_VARIABLE) or configured, base_dir)


def resolve_tracking_uri(uri: str, base_dir: str | Path) -> str:
    """Make a relative ``sqlite:///file.db`` URI absolute against ``base_dir``; leave others alone."""
    if uri.startswith(SQLITE_PREFIX):
        db_path = Path(uri[len(SQLITE_PREFIX) :])
        if not db_path.is_absolute():
            return SQLITE_PREFIX + str((Path(base_dir) / db_path).resolve())
    return uri


def artifact_location(uri: str) -> str | None:
    """Where a sqlite store keeps run artifacts: ``mlartifacts/`` beside the database, not the cwd."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return (Path(uri[len(SQLITE_PREFIX) :]).parent / "mlartifacts").resolve().as_uri()


def check_tracking_store(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Bound MLflow's HTTP retries (:data:`HTTP_RETRY_DEFAULTS`) and, for an http(s) URI, raise
    :class:`TrackingStoreUnreachable` unless the server answers within ``timeout_s``."""
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    try:
        urllib.request.urlopen(uri, timeout=timeout_s).close()
    except urllib.error.HTTPError:  # an answer, if an error page: the server is there
        return
    except (OSError, http.client.HTTPException) as exc:  # refused, unknown host, timed out, not HTTP
        reason = getattr(exc, "reason", exc)
        raise TrackingStoreUnreachable(
            f"tracking store {uri} does not answer within {timeout_s:g} s ({reason}). Start the MLflow server "
            "(mlflow server --host HOST --port PORT), correct tracking.uri in the params file, or track into a "
            "local file with tracking.uri: sqlite:///mlflow.db"
        ) from None


def ensure_experiment(uri: str, experiment: str) -> None:
    """Check that the tracking store answers, then create it and the experiment once, even when several
    jobs start together.

    Two processes creating one new sqlite store (or one experiment) race, so creation is
    serialised with a lock file beside the database; against a tracking server, the job that loses
    the race finds the experiment the other one created.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    check_tracking_store(uri)
    lock_path = Path(uri[len(SQLITE_PREFIX) :] + ".lock") if uri.startswith(SQLITE_PREFIX) else None
    with contextlib.ExitStack() as stack:
        if lock_path is not None:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fcntl.flock(stack.enter_context(open(lock_path, "w")), fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri=uri)
        if client.get_experiment_by_name(experiment) is None:
            try:
                client.create_experiment(experiment, artifact_location=artifact_location(uri))
            except MlflowException:
                if client.get_experiment_by_name(experiment) is None:
                    raise


def artifact_uri(uri: str, run_id: str, name: str) -> str:
    """The URI of the artifact ``name`` of an MLflow run (where the run's logged files live)."""
    from mlflow.tracking import MlflowClient

    return f"{MlflowClient(tracking_uri=uri).get_run(run_id).info.artifact_uri.rstrip('/')}/{name}"


def log_to_run(uri: str, run_id: str, metrics: Mapping[str, float], artifacts: tuple[Path, ...] = ()) -> None:
    """Add metrics and artifact files to an existing MLflow run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for name, value in metrics.items():
        client.log_metric(run_id, metric_key(name), float(value))
    for artifact in artifacts:
        client.log_artifact(run_id, str(artifact))


def log_to_child_run(
    uri: str,
    parent_run_id: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: tuple[Path, ...] = (),
) -> str:
    """Log metrics and artifacts to a new, finished MLflow run nested under ``parent_run_id``; its id.

    The child copies the parent's tags (provenance, config hash) with ``tags`` on top: an evaluation of
    a training run's weights on another test set gets a run of its own under the training run.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    inherited = {key: value for key, value in parent.data.tags.items() if not key.startswith("mlflow.")}
    child = client.create_run(
        parent.info.experiment_id,
        tags={**inherited, **tags, "mlflow.parentRunId": parent_run_id},
        run_name=tags.get("run_id"),
    )
    log_to_run(uri, child.info.run_id, metrics, artifacts)
    client.set_terminated(child.info.run_id)
    return child.info.run_id


def run_is_open(uri: str, run_id: str) -> bool:
    """Whether MLflow run ``run_id`` exists in the store at ``uri`` and is not deleted (it can be continued)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri=uri).get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def end_abandoned_run(uri: str, run_id: str, reason: str) -> bool:
    """Mark MLflow run ``run_id`` FAILED, with ``reason`` as its ``abandoned`` tag, if it is still RUNNING
    (its process died without ending it); whether it was."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return False
    except MlflowException:
        return False
    client.set_tag(run_id, "abandoned", reason)
    client.set_terminated(run_id, status="FAILED")
    return True


def metric_key(name: str) -> str:
    """An MLflow metric key for a metric name: MLflow allows alphanumerics, _ - . space / only, so
    "R@1" -> "R_at_1", "TAR@FAR=0.001" -> "TAR_at_FAR_0.001"."""
    return name.replace("@", "_at_").replace("=", "_")


def disable_telemetry() -> None:
    """Opt out of MLflow telemetry and DVC analytics for this process and its children."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def quiet_artifact_transfers() -> None:
    """No MLflow progress bar per artifact upload or download (they flood job logs) for this process and its
    children; a value already set in the environment wins."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
