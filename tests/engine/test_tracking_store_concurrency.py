"""Many jobs at once against one MLflow store: a tracking server (a team's set-up) and the sqlite file.

Nine tiny trainings run concurrently through the CLI, then their evaluations, then the report; the
store must hold every run with every metric its metrics.json reports and its weights, and the report
must read every result from it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from circle_repro.config import expand_runs, load_params, tracking_experiment
from circle_repro.engine.tracking import metric_key
from circle_repro.layout import evaluation_dir
from support import tiny_params, write_params

BIN = Path(sys.executable).parent
ENV = os.environ | {
    "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "OMP_NUM_THREADS": "1",
}
ENV.pop("MLFLOW_TRACKING_URI", None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path):
    """``mlflow server`` on 127.0.0.1 with a sqlite backend and a local artifact root; its URI.

    It runs in a session of its own (setsid) and is stopped by process group: its workers outlive a
    plain kill of the parent.
    """
    port = _free_port()
    folder = tmp_path / "server"
    folder.mkdir()
    command = [
        BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed in the finally below, after the server stops)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _cli(args, cwd, env):
    return subprocess.Popen(
        [BIN / "circle-repro", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _all_succeed(processes):
    outputs = [process.communicate(timeout=1200)[0] for process in processes]
    failed = [output[-3000:] for process, output in zip(processes, outputs, strict=True) if process.returncode != 0]
    assert not failed, "\n---\n".join(failed)


def _run_study(workdir: Path, repo_params: dict, prepared: Path, env: dict) -> dict:
    """Train every run of a tiny two-experiment demo at once, evaluate them all at once, report; the params."""
    params = tiny_params(repo_params, epochs=1, max_images=160)
    params["profiles"]["demo"]["experiments"] = ["demo_retrieval", "demo_verification"]
    params["experiments"]["demo_retrieval"]["seeds"] = [0, 1]  # 2 x 2 + 5 x 1 = 9 runs
    write_params(params, workdir / "params.yaml")
    params = load_params(workdir / "params.yaml")
    runs = expand_runs(params)
    assert len(runs) >= 8
    common = ["--params", "params.yaml", "--data", prepared]
    _all_succeed([_cli(["train", "--run", run.run_id, "--out", run.run_dir(), *common], workdir, env) for run in runs])
    _all_succeed(
        [_cli(["evaluate", "--run", run.run_id, "--run-dir", run.run_dir(), *common], workdir, env) for run in runs]
    )
    _all_succeed([_cli(["report", "--params", "params.yaml", "--out", "reports"], workdir, env)])
    return params


def _check_store(workdir: Path, params: dict, uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking_experiment(params))
    assert experiment is not None and experiment.name == "circle-repro-demo"
    mlflow_runs = client.search_runs([experiment.experiment_id], max_results=1000)
    runs = expand_runs(params)
    assert sorted(r.data.tags["run_id"] for r in mlflow_runs) == sorted(run.run_id for run in runs), (
        "one MLflow run each"
    )
    report = (workdir / "reports" / "report.md").read_text()
    for mlflow_run in mlflow_runs:
        run_dir = workdir / "runs" / mlflow_run.data.tags["run_id"]
        record = json.loads((evaluation_dir(run_dir) / "metrics.json").read_text())
        assert mlflow_run.info.status == "FINISHED" and record["mlflow_run_id"] == mlflow_run.info.run_id
        logged = mlflow_run.data.metrics
        expected = record["metrics"] | {
            f"untrained_{name}": value for name, value in record["untrained_metrics"].items()
        }
        assert {metric_key(name): value for name, value in expected.items()}.items() <= logged.items()
        assert "throughput_images_per_s" in logged and any(key.endswith("loss") for key in logged), sorted(logged)
        artifacts = {artifact.path for artifact in client.list_artifacts(mlflow_run.info.run_id)}
        assert {"model.pth", "metrics.json", "per_query.npz"} <= artifacts
        weights = Path(client.download_artifacts(mlflow_run.info.run_id, "model.pth", str(workdir / "download")))
        assert weights.read_bytes() == (run_dir / "model.pth").read_bytes()
        weights.unlink()
        expected_uri = f"{mlflow_run.info.artifact_uri}/model.pth"
        assert record["weights_uri"] == expected_uri
        assert f"| {record['run_id']} | MLflow | {mlflow_run.info.run_id} | {expected_uri} |" in report


@pytest.mark.slow
def test_concurrent_jobs_against_a_tracking_server_lose_no_run_metric_or_artifact(
    tmp_path, repo_params, prepared_mnist5k, tracking_server
):
    params = _run_study(tmp_path, repo_params, prepared_mnist5k, ENV | {"MLFLOW_TRACKING_URI": tracking_server})
    assert not (tmp_path / "mlflow.db").exists(), "MLFLOW_TRACKING_URI overrides the params' sqlite store"
    _check_store(tmp_path, params, tracking_server)


@pytest.mark.slow
def test_concurrent_jobs_against_the_sqlite_store_lose_no_run_metric_or_artifact(
    tmp_path, repo_params, prepared_mnist5k
):
    params = _run_study(tmp_path, repo_params, prepared_mnist5k, ENV)
    _check_store(tmp_path, params, f"sqlite:///{tmp_path / 'mlflow.db'}")
