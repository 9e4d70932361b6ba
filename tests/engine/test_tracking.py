import http.server
import multiprocessing
import os
import re
import socket
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from circle_repro.engine.errors import TrackingStoreUnreachable
from circle_repro.engine.tracking import (
    HTTP_RETRY_DEFAULTS,
    artifact_location,
    check_tracking_store,
    end_abandoned_run,
    ensure_experiment,
    quiet_artifact_transfers,
    resolve_tracking_uri,
    run_is_open,
    tracking_uri,
)


def test_relative_sqlite_uris_resolve_against_the_params_folder(tmp_path):
    assert resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_mlflow_tracking_uri_overrides_the_params_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///team.db")  # relative: against the params folder too
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/team.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # set but empty: the params' store
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def _create(uri: str) -> None:
    ensure_experiment(uri, "race")


def test_concurrent_jobs_create_one_store_and_one_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_create, args=(uri,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("race")
    assert experiment.artifact_location == artifact_location(uri) == (tmp_path / "mlartifacts").as_uri()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_fails_within_seconds_naming_the_uri(monkeypatch):
    for name in HTTP_RETRY_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingStoreUnreachable, match=re.escape(f"tracking store {uri} does not answer")) as error:
        ensure_experiment(uri, "anything")
    assert time.monotonic() - started < 10
    assert "sqlite:///mlflow.db" in str(error.value)
    assert {name: os.environ[name] for name in HTTP_RETRY_DEFAULTS} == HTTP_RETRY_DEFAULTS


def test_a_server_that_accepts_but_never_answers_times_out():
    with socket.socket() as silent:  # the kernel completes the handshake; nothing ever replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TrackingStoreUnreachable, match="does not answer within 1 s"):
            check_tracking_store(uri, timeout_s=1)
        assert time.monotonic() - started < 5


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_a_server_that_answers_passes_even_with_an_error_page():
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_tracking_store(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=5)
    finally:
        server.shutdown()
    check_tracking_store("sqlite:///nowhere/mlflow.db")  # local stores need no probe


def test_abandoned_running_runs_are_marked_failed_and_others_left_alone(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "e")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("e").experiment_id
    running, finished = (client.create_run(experiment).info.run_id for _ in range(2))
    client.set_terminated(finished, "FINISHED")
    assert end_abandoned_run(uri, running, "its process died")
    assert not end_abandoned_run(uri, finished, "its process died")
    assert not end_abandoned_run(uri, "0" * 32, "no such run")
    assert client.get_run(running).info.status == "FAILED"
    assert client.get_run(running).data.tags["abandoned"] == "its process died"
    assert client.get_run(finished).info.status == "FINISHED"
    assert run_is_open(uri, running) and not run_is_open(uri, "0" * 32)


def test_the_cli_turns_mlflow_artifact_progress_bars_off_unless_the_environment_sets_them(monkeypatch, capsys):
    from mlflow.utils.file_utils import ArtifactProgressBar

    from circle_repro.cli import main
    from support import REPO_ROOT

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    assert ArtifactProgressBar.files("downloading", total=3).pbar is not None, "MLflow draws a bar by default"
    capsys.readouterr()
    assert main(["runs", "--params", str(REPO_ROOT / "params.yaml"), "--profile", "demo"]) == 0
    assert ArtifactProgressBar.files("downloading", total=3).pbar is None
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    quiet_artifact_transfers()
    assert ArtifactProgressBar.files("downloading", total=3).pbar is not None
